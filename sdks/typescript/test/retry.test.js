// A key limited to one request a minute: with retries the call waits out Retry-After and
// succeeds; without them it rejects with RateLimitError and `retryAfter`. A file of its
// own, so its wait of up to a minute runs beside the other tests.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { RateLimitError, Switchyard } from "../src/index.js";
import { startServer } from "./support.js";

let server;
before(async () => {
  server = await startServer();
});
after(() => server?.stop());

test("a rate-limited call waits out Retry-After, or says how long to wait", async () => {
  const admin = new Switchyard({ apiKey: server.adminKey, baseUrl: server.baseUrl });
  const limited = await admin.apiKeys.create({ name: "slow", scopes: ["usage:read"], rateLimits: { perMinute: 1 } });
  const impatient = new Switchyard({ apiKey: limited.key, baseUrl: server.baseUrl, maxRetries: 0 });
  const patient = new Switchyard({ apiKey: limited.key, baseUrl: server.baseUrl, maxRetries: 2 });
  await impatient.whoami();
  const refused = await impatient.whoami().catch((e) => e);
  assert.ok(refused instanceof RateLimitError);
  assert.ok(refused.retryAfter > 0 && refused.retryAfter <= 60, `retryAfter ${refused.retryAfter}`);
  const started = Date.now();
  assert.equal((await patient.whoami()).key_id, limited.id); // the next minute's request
  const waited = (Date.now() - started) / 1000;
  assert.ok(waited >= Math.min(refused.retryAfter, 1) * 0.9, `waited ${waited} s`);
});
