// Sending requests: the key, a timeout, typed errors, and retries with jittered backoff on
// 429 (honouring Retry-After), 503 and connection errors. A POST carries one
// Idempotency-Key reused across its retries, so a retry never writes twice.
import { APIConnectionError, SwitchyardError, errorFor } from "./errors.js";

export const DEFAULT_BASE_URL = "http://127.0.0.1:8080";
export const VERSION = "0.1.0";
const RETRIED_STATUSES = new Set([429, 503]);

/** Seconds before retry `attempt` (1-based): Retry-After when given, else 0.5 s doubling to
 * 8 s; jittered so clients that failed together do not come back together. */
function retryDelay(attempt, retryAfter) {
  if (retryAfter !== undefined) return retryAfter * (1 + Math.random() * 0.25);
  return Math.min(8, 0.5 * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5);
}

function parseRetryAfter(response) {
  const value = response.headers.get("retry-after");
  if (value === null) return undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) ? seconds : undefined;
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

/** Query parameters without the ones left out; booleans as the API spells them. */
function queryString(query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value === undefined || value === null) continue;
    params.append(name, typeof value === "boolean" ? String(value) : `${value}`);
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

async function decode(response, raw) {
  const text = await response.text();
  if (raw) return text;
  if (response.status === 204 || text === "") return undefined;
  const type = response.headers.get("content-type") ?? "";
  return type.includes("json") ? JSON.parse(text) : text;
}

async function problemOf(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export class Transport {
  constructor({ apiKey, baseUrl = DEFAULT_BASE_URL, timeoutMs = 30_000, maxRetries = 2, fetch: f } = {}) {
    if (!apiKey) throw new SwitchyardError("an apiKey is required (a `sy_live_…` or `sy_test_…` key)");
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.timeoutMs = timeoutMs;
    this.maxRetries = maxRetries;
    this.fetch = f ?? globalThis.fetch.bind(globalThis);
    this.headers = { authorization: `Bearer ${apiKey}`, "user-agent": `switchyard-js/${VERSION}` };
  }

  /** One operation: its answer (parsed JSON, text with `raw`), or a typed error. */
  async request(method, path, { query, body, idempotencyKey, raw = false } = {}) {
    const url = `${this.baseUrl}/api/v1${path}${queryString(query)}`;
    const headers = { ...this.headers };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (method === "POST") headers["idempotency-key"] = idempotencyKey ?? crypto.randomUUID();
    const payload = body === undefined ? undefined : JSON.stringify(body);
    for (let attempt = 1; ; attempt++) {
      let response;
      try {
        response = await this.fetch(url, {
          method,
          headers,
          body: payload,
          signal: AbortSignal.timeout(this.timeoutMs),
        });
      } catch (error) {
        if (attempt > this.maxRetries) {
          throw new APIConnectionError(`${method} ${path}: ${error?.cause?.message ?? error.message}`, {
            body: error,
          });
        }
        await sleep(retryDelay(attempt, undefined));
        continue;
      }
      if (RETRIED_STATUSES.has(response.status) && attempt <= this.maxRetries) {
        await response.body?.cancel();
        await sleep(retryDelay(attempt, parseRetryAfter(response)));
        continue;
      }
      if (response.status >= 400) {
        const problem = await problemOf(response);
        throw errorFor(response.status, problem, response.headers.get("x-request-id") ?? undefined,
          parseRetryAfter(response));
      }
      return decode(response, raw);
    }
  }

  /** Every item of a list, page after page (offset pages or keyset cursors). */
  async *paginate(path, query = {}) {
    const params = { ...query };
    for (;;) {
      const page = await this.request("GET", path, { query: params });
      yield* page.items;
      if ("next_cursor" in page) {
        if (!page.next_cursor) return;
        params.before = page.next_cursor;
      } else {
        if (page.page * page.page_size >= page.total || page.items.length === 0) return;
        params.page = page.page + 1;
        params.page_size = page.page_size;
      }
    }
  }
}
