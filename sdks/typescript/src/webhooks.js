// Verifying a delivery on the receiving side (Standard Webhooks): the HMAC-SHA256 of
// `{webhook-id}.{webhook-timestamp}.{body}` under the endpoint's secret, any of the
// signatures sent (during a secret rotation there are two), and a timestamp within the
// tolerance so a captured delivery cannot be replayed later. WebCrypto only.
import { WebhookVerificationError } from "./errors.js";

export const TOLERANCE_SECONDS = 5 * 60;

function header(headers, name) {
  let value;
  if (typeof headers?.get === "function") {
    value = headers.get(name);
  } else {
    for (const [k, v] of Object.entries(headers ?? {})) {
      if (k.toLowerCase() === name) value = Array.isArray(v) ? v.join(" ") : v;
    }
  }
  if (value === undefined || value === null) throw new WebhookVerificationError(`missing ${name} header`);
  return String(value);
}

function bytesOf(body) {
  if (typeof body === "string") return new TextEncoder().encode(body);
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  throw new WebhookVerificationError("the body must be the raw bytes or text as received");
}

function base64ToBytes(text) {
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function bytesToBase64(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** Compares in time independent of where the strings differ. */
function sameText(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * The delivery's JSON (`{ type, timestamp, data }`) once its signature checks out; rejects
 * with `WebhookVerificationError` otherwise. `body` is the raw request body as received.
 */
export async function verifyWebhook(body, headers, secret, { toleranceSeconds = TOLERANCE_SECONDS, now } = {}) {
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  const sentAt = Number(timestamp);
  if (!/^\d+$/.test(timestamp) || !Number.isSafeInteger(sentAt)) {
    throw new WebhookVerificationError("webhook-timestamp is not a number");
  }
  const current = now ?? Date.now() / 1000;
  if (Math.abs(current - sentAt) > toleranceSeconds) {
    throw new WebhookVerificationError("webhook-timestamp is outside the tolerance (a replay?)");
  }
  let key;
  try {
    key = base64ToBytes(secret.startsWith("whsec_") ? secret.slice("whsec_".length) : secret);
  } catch {
    throw new WebhookVerificationError("the secret is not a whsec_… secret");
  }
  const payload = bytesOf(body);
  const prefix = new TextEncoder().encode(`${id}.${timestamp}.`);
  const signed = new Uint8Array(prefix.length + payload.length);
  signed.set(prefix);
  signed.set(payload, prefix.length);
  const hmacKey = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const expected = bytesToBase64(new Uint8Array(await crypto.subtle.sign("HMAC", hmacKey, signed)));
  for (const candidate of signatures.split(" ")) {
    const [version, value] = candidate.split(",", 2);
    if (version === "v1" && value !== undefined && sameText(value, expected)) {
      return JSON.parse(new TextDecoder().decode(payload));
    }
  }
  throw new WebhookVerificationError("no signature matches");
}
