// The SDK against a real `switchyard dev`: every operation of the OpenAPI document has a
// method; every namespace's happy path; each error class from a real answer; lists over
// several pages; an idempotent retry after a dropped connection; webhook verification of a
// real delivery, a tampered one, and one during a secret rotation.
import assert from "node:assert/strict";
import { connect, createServer } from "node:net";
import { after, before, test } from "node:test";

import {
  APIConnectionError, AuthenticationError, ConflictError, NotFoundError, OPERATIONS, PermissionDeniedError,
  RateLimitError, Switchyard, ValidationError, WebhookVerificationError, verifyWebhook,
} from "../src/index.js";
import { freePort, startReceiver, startServer, unique } from "./support.js";

let server;
let client;
before(async () => {
  server = await startServer();
  client = new Switchyard({ apiKey: server.adminKey, baseUrl: server.baseUrl });
});
after(() => server?.stop());

const all = async (iterator) => {
  const items = [];
  for await (const item of iterator) items.push(item);
  return items;
};

test("every operation of the OpenAPI document has a method", async () => {
  const spec = await (await fetch(`${server.baseUrl}/openapi.json`)).json();
  const ops = Object.values(spec.paths).flatMap((methods) => Object.values(methods).map((op) => op.operationId));
  assert.ok(ops.length > 50);
  assert.deepEqual(ops.filter((op) => !(op in OPERATIONS)), [], "operations without an SDK method");
  assert.deepEqual(Object.keys(OPERATIONS).filter((op) => !ops.includes(op)), [], "methods of operations that are gone");
  for (const [op, path] of Object.entries(OPERATIONS)) {
    let target = client;
    let owner;
    for (const part of path.split(".")) [owner, target] = [target, target?.[part]];
    assert.equal(typeof target, "function", `${op} → ${path}`);
    assert.ok(owner);
  }
});

test("webhooks, events and deliveries", async (t) => {
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  const ep = await client.webhooks.create({ url: receiver.url, eventTypes: ["js.*"], description: "sdk" });
  assert.match(ep.id, /^ep_/);
  assert.match(ep.secret, /^whsec_/);
  assert.deepEqual(ep.event_types, ["js.*"]);
  assert.equal((await client.webhooks.get(ep.id)).url, receiver.url);
  assert.equal((await client.webhooks.update(ep.id, { description: "changed" })).description, "changed");
  assert.ok((await all(client.webhooks.list())).some((e) => e.id === ep.id));
  const sent = await client.events.publish("js.one", { n: 1 });
  const batch = await client.events.publishBatch([{ type: "js.two", data: {} }, { type: "js.three", data: {} }]);
  assert.equal(batch.events.length, 2);
  const tested = await client.webhooks.test(ep.id);
  await receiver.wait(4);
  const event = await client.events.get(sent.id);
  assert.equal(event.type, "js.one");
  assert.deepEqual(event.payload.data, { n: 1 });
  assert.ok((await all(client.events.list({ type: "js.one" }))).some((e) => e.id === sent.id));
  const deadline = Date.now() + 10_000;
  while ((await client.deliveries.get(tested.delivery_id)).status !== "delivered") {
    assert.ok(Date.now() < deadline, "the test delivery was recorded as delivered");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.ok((await all(client.webhooks.deliveries(ep.id))).some((d) => d.id === tested.delivery_id));
  const listed = await all(client.deliveries.list({ endpointId: ep.id }));
  assert.ok(listed.length >= 4 && listed.every((d) => d.endpoint_id === ep.id));
  const series = await client.deliveries.series();
  assert.ok(series.points.reduce((n, p) => n + p.attempts, 0) >= 4);
  await assert.rejects(client.deliveries.retry(tested.delivery_id), ConflictError); // delivered
  assert.equal((await client.webhooks.recover(ep.id, { since: "2020-01-01T00:00:00Z" })).count, 0);
  const rotated = await client.webhooks.rotateSecret(ep.id);
  assert.notEqual(rotated.secret, ep.secret);
  await client.webhooks.delete(ep.id);
  await assert.rejects(client.webhooks.get(ep.id), NotFoundError);
});

test("keys, tenants, usage and the audit log", async () => {
  const key = await client.apiKeys.create({ name: "js", scopes: ["usage:read"], rateLimits: { perDay: 1000 } });
  assert.match(key.key, /^sy_/);
  assert.equal((await client.apiKeys.get(key.id)).name, "js");
  assert.equal((await client.apiKeys.update(key.id, { name: "renamed" })).name, "renamed");
  assert.ok((await all(client.apiKeys.list())).some((k) => k.id === key.id));
  await client.apiKeys.delete(key.id);
  const tenant = await client.tenants.create({ name: "js tenant", metadata: { tier: "gold" } });
  assert.deepEqual((await client.tenants.get(tenant.id)).metadata, { tier: "gold" });
  assert.equal((await client.tenants.update(tenant.id, { name: "renamed" })).name, "renamed");
  assert.ok((await all(client.tenants.list())).some((x) => x.id === tenant.id));
  await client.tenants.delete(tenant.id);
  assert.ok((await client.whoami()).scopes.includes("admin"));
  assert.ok(Array.isArray((await client.usage.get()).keys));
  assert.equal((await client.usage.series({ step: 3600 })).points.length, 24);
  assert.match(await client.usage.exportCsv({ step: 3600 }), /^at,key_id,/);
  const created = await all(client.auditLog.list({ action: "tenant.created", targetId: tenant.id }));
  assert.equal(created.length, 1);
  assert.match(await client.auditLog.exportCsv({ action: "tenant.created" }), /^id,at,/);
});

async function waitUntil(what, check, withinMs = 15_000) {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    assert.ok(Date.now() < deadline, `${what} within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test("jobs, queues and schedules", async () => {
  const { queues } = await client.queues.list();
  assert.deepEqual(new Set(queues.map((q) => q.name)), new Set(["webhooks", "pidms", "sikka", "maintenance"]));
  const canary = await client.queues.canary("maintenance");
  assert.equal((await client.queues.getCanary(canary.run_id)).run_id, canary.run_id);
  assert.equal((await client.jobs.get(canary.job_id)).queue, "maintenance");
  assert.ok(Array.isArray(await all(client.jobs.list({ queue: "maintenance", state: "dead" }))));
  assert.ok((await client.jobs.retryMany({ queue: "maintenance", state: "dead" })).count >= 0);
  assert.equal((await client.jobs.discard({ ids: ["01J00000000000000000000000"] })).count, 0);
  assert.ok((await client.schedules.list()).some((s) => s.name === "queue-vacuum"));
  assert.equal((await client.schedules.run("queue-vacuum")).schedule, "queue-vacuum");
});

const KEYS = ["ABCDE-FGHIJ-KLMNO-PQRST-UVWX1", "BCDEF-GHIJK-LMNOP-QRSTU-VWXY2"];

test("pidms against the PIDKey simulator", async () => {
  const checked = await client.pidms.check([...KEYS, "not a key"], { wait: 15 });
  assert.equal(checked.accepted, 2);
  assert.equal(checked.errors[0].line, 3);
  assert.deepEqual(new Set(checked.results.map((r) => r.keyname_with_dash)), new Set(KEYS));
  assert.equal((await client.pidms.getCheck(checked.job_id)).job_id, checked.job_id);
  const products = new Set((await client.pidms.products()).products.map((p) => p.prd));
  assert.ok(products.size > 0 && checked.results.every((r) => products.has(r.prd)));
  const [one] = checked.results;
  assert.equal((await client.pidms.getKey(one.keyname)).prd, one.prd);
  const found = await all(client.pidms.search({ product: one.prd.slice(0, 6), pageSize: 1 }));
  assert.ok(found.some((k) => k.keyname === one.keyname));
  const sync = await client.pidms.sync();
  const done = await waitUntil("the sync", async () => {
    const s = await client.pidms.getSync(sync.sync_id);
    return s.status === "completed" && s;
  });
  assert.equal(done.keys_updated, 2);
  assert.ok((await all(client.pidms.syncs())).some((s) => s.id === sync.sync_id));
  assert.ok((await client.pidms.exportCsv()).includes(one.keyname));
});

test("sikka against the Sikka simulator", async () => {
  await client.sikka.refreshPractices();
  const practices = await waitUntil("the practices", async () => {
    const list = await client.sikka.practices();
    return list.length > 0 && list;
  });
  const d1001 = practices.find((p) => p.office_id === "D1001");
  assert.ok(d1001);
  const tenant = await client.tenants.create({ name: unique("practice-owner-") });
  assert.equal((await client.sikka.updatePractice(d1001.id, { tenantId: tenant.id })).tenant_id, tenant.id);
  assert.equal((await client.sikka.updatePractice(d1001.id, { tenantId: null })).tenant_id, null);
  const wb = await client.sikka.createWriteback({
    officeId: "D1001",
    operation: "book_appointment",
    body: { patient_id: "1042", date: "2026-12-01", time: "09:30", length: 30, provider_id: "DOC1", operatory: "OP2" },
  });
  assert.equal(wb.status, "queued");
  const done = await waitUntil("the writeback", async () => {
    const w = await client.sikka.getWriteback(wb.id);
    return w.status === "completed" && w;
  });
  assert.ok(done.sikka_id);
  assert.ok((await all(client.sikka.writebacks({ status: "completed" }))).some((w) => w.id === wb.id));
});

test("each error class from a real answer", async () => {
  const stranger = new Switchyard({ apiKey: `sy_test_${"x".repeat(38)}`, baseUrl: server.baseUrl });
  const unauthenticated = await stranger.whoami().catch((e) => e);
  assert.ok(unauthenticated instanceof AuthenticationError);
  assert.equal(unauthenticated.status, 401);
  assert.ok(unauthenticated.requestId && unauthenticated.title);
  const reader = await client.apiKeys.create({ name: "reader", scopes: ["webhooks:read"] });
  const denied = await new Switchyard({ apiKey: reader.key, baseUrl: server.baseUrl })
    .webhooks.create({ url: "http://127.0.0.1:9/x", eventTypes: ["a.*"] }).catch((e) => e);
  assert.ok(denied instanceof PermissionDeniedError);
  assert.match(denied.detail, /webhooks:write/);
  await assert.rejects(client.webhooks.get("ep_nope"), NotFoundError);
  const invalid = await client.webhooks.create({ url: "not a url", eventTypes: ["a.*"] }).catch((e) => e);
  assert.ok(invalid instanceof ValidationError);
  assert.equal(invalid.errors[0].field, "url");
  const limited = await client.apiKeys.create({ name: "limited", scopes: ["usage:read"], rateLimits: { perMinute: 1 } });
  const once = new Switchyard({ apiKey: limited.key, baseUrl: server.baseUrl, maxRetries: 0 });
  await once.whoami();
  const limitedError = await once.whoami().catch((e) => e);
  assert.ok(limitedError instanceof RateLimitError);
  assert.ok(limitedError.retryAfter > 0 && limitedError.retryAfter <= 60, `retryAfter ${limitedError.retryAfter}`);
  const nowhere = new Switchyard({ apiKey: server.adminKey, baseUrl: `http://127.0.0.1:${await freePort()}`, maxRetries: 1 });
  await assert.rejects(nowhere.whoami(), APIConnectionError);
});

/** Forwards to Switchyard; the first connection's answer is read and thrown away (the
 * connection closed instead), as if the network broke after the server wrote. */
async function droppingProxy(targetPort) {
  const proxy = { connections: 0 };
  const server = createServer((conn) => {
    const drop = proxy.connections++ === 0;
    const upstream = connect(targetPort, "127.0.0.1");
    conn.pipe(upstream);
    upstream.on("data", (chunk) => (drop ? conn.destroy() : conn.write(chunk)));
    upstream.on("end", () => conn.end());
    conn.on("error", () => upstream.destroy());
    conn.on("close", () => upstream.destroy());
    upstream.on("error", () => conn.destroy());
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.port = server.address().port;
  proxy.close = () => new Promise((resolve) => server.close(resolve));
  return proxy;
}

test("an idempotent retry after a dropped connection writes once", async (t) => {
  const proxy = await droppingProxy(server.port);
  t.after(() => proxy.close());
  const through = new Switchyard({ apiKey: server.adminKey, baseUrl: `http://127.0.0.1:${proxy.port}`, maxRetries: 2 });
  const kind = unique("js.idem");
  const answer = await through.events.publish(kind, { once: true });
  assert.ok(proxy.connections >= 2, "the first answer was dropped and the call retried");
  const seen = (await all(client.events.list({ type: kind }))).map((e) => e.id);
  assert.deepEqual(seen, [answer.id], "the server wrote the event once");
});

test("lists cover every page", async () => {
  const prefix = unique("page-");
  const made = new Set();
  for (let i = 0; i < 7; i++) made.add((await client.tenants.create({ name: `${prefix}${i}` })).id);
  const listed = (await all(client.tenants.list({ pageSize: 3 }))).filter((x) => x.name.startsWith(prefix));
  assert.deepEqual(new Set(listed.map((x) => x.id)), made); // three pages of offset paging
  const kind = unique("js.cursor");
  const published = [];
  for (let i = 0; i < 5; i++) published.push((await client.events.publish(kind, { i })).id);
  const events = await all(client.events.list({ type: kind, limit: 2 })); // three keyset pages
  assert.deepEqual(events.map((e) => e.id), published.reverse());
});

test("verifyWebhook: a real delivery, a tampered one, and a rotation", async (t) => {
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  const ep = await client.webhooks.create({ url: receiver.url, eventTypes: ["verify.*"] });
  await client.events.publish("verify.me", { ok: true });
  const [first] = await receiver.wait(1);
  assert.deepEqual((await verifyWebhook(first.body, first.headers, ep.secret)).data, { ok: true });
  assert.deepEqual((await verifyWebhook(first.body.toString(), new Headers(first.headers), ep.secret)).data, { ok: true });
  const tampered = Buffer.from(first.body.toString().replace("true", "false"));
  await assert.rejects(verifyWebhook(tampered, first.headers, ep.secret), WebhookVerificationError);
  await assert.rejects(verifyWebhook(first.body, first.headers, ep.secret, { now: Date.now() / 1000 + 3600 }),
    WebhookVerificationError);
  const { "webhook-signature": _, ...unsigned } = first.headers;
  await assert.rejects(verifyWebhook(first.body, unsigned, ep.secret), WebhookVerificationError);
  const rotated = await client.webhooks.rotateSecret(ep.id);
  await client.events.publish("verify.rotated", { ok: 2 });
  const second = (await receiver.wait(2))[1];
  assert.equal(second.headers["webhook-signature"].split(" ").length, 2, "old and new secret both sign");
  assert.deepEqual((await verifyWebhook(second.body, second.headers, ep.secret)).data, { ok: 2 });
  assert.deepEqual((await verifyWebhook(second.body, second.headers, rotated.secret)).data, { ok: 2 });
  await assert.rejects(verifyWebhook(second.body, second.headers, `whsec_${"A".repeat(43)}=`), WebhookVerificationError);
});
