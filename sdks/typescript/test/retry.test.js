// Retries against real answers: a key limited to one request a minute (with retries the
// call waits out Retry-After and succeeds; without them it rejects with RateLimitError and
// `retryAfter`), and a real 503 (ServerError, or retried until it succeeds). A file of its
// own, so its wait of up to a minute runs beside the other tests.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { RateLimitError, ServerError, Switchyard } from "../src/index.js";
import { startServer, unique } from "./support.js";

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

/** A second process's exclusive lock on dev's SQLite store (Node 20 has no SQLite of its
 * own: Python's holds it): the API's writes wait out SQLite's busy timeout (5 s) and answer
 * a real 503 with Retry-After. The lock goes when `release()` closes the helper's stdin. */
async function lockStore(server) {
  const helper = spawn("python3", ["-c", [
    "import sqlite3, sys",
    "db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)",
    "db.execute('BEGIN EXCLUSIVE')",
    "print('locked', flush=True)",
    "sys.stdin.read()",
  ].join("\n"), join(server.data, "switchyard.db")], { stdio: ["pipe", "pipe", "inherit"] });
  const [line] = await once(helper.stdout, "data");
  assert.equal(line.toString().trim(), "locked");
  return {
    async release() {
      if (helper.exitCode !== null) return;
      helper.stdin.end();
      await once(helper, "exit");
    },
  };
}

const unavailableAnswers = (server) => readFileSync(server.log, "utf8").split("store unavailable").length - 1;

test("a real 503 rejects with ServerError, or is retried until it succeeds", async () => {
  const admin = new Switchyard({ apiKey: server.adminKey, baseUrl: server.baseUrl });
  const impatient = new Switchyard({ apiKey: server.adminKey, baseUrl: server.baseUrl, maxRetries: 0 });
  let lock = await lockStore(server);
  const refused = await impatient.tenants.create({ name: unique("locked-") }).catch((e) => e);
  await lock.release();
  assert.ok(refused instanceof ServerError, `got ${refused}`);
  assert.equal(refused.status, 503);
  assert.ok(refused.requestId && refused.title);

  const patient = new Switchyard({ apiKey: server.adminKey, baseUrl: server.baseUrl, maxRetries: 3 });
  const name = unique("retried-");
  lock = await lockStore(server);
  const before = unavailableAnswers(server);
  const call = patient.tenants.create({ name });
  const deadline = Date.now() + 30_000;
  while (unavailableAnswers(server) === before) {
    assert.ok(Date.now() < deadline, "the API answered 503 while the store was locked");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await lock.release();
  const tenant = await call;
  assert.equal(tenant.name, name);
  const named = [];
  for await (const t of admin.tenants.list()) if (t.name === name) named.push(t.id);
  assert.deepEqual(named, [tenant.id], "written once");
});
