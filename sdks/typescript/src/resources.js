// The API's areas as namespaces. Options are camelCase and sent as the API spells them
// (snake_case); answers are returned as the API writes them. User data (`data`, `metadata`,
// a writeback's `body`) is sent untouched. List methods return async iterators over every
// page.

const segment = (value) => encodeURIComponent(String(value));
const snakeName = (name) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Options as the API spells them: keys in snake_case, undefined left out; the values of
 * `nested` keys (plain option objects such as `rateLimits`) converted the same way. */
function wire(options = {}, nested = []) {
  const out = {};
  for (const [name, value] of Object.entries(options)) {
    if (value === undefined) continue;
    out[snakeName(name)] = nested.includes(name) && value && typeof value === "object" ? wire(value) : value;
  }
  return out;
}

class Resource {
  constructor(transport) {
    this.t = transport;
  }
}

const byTenant = (tenantId) => ({ query: wire({ tenantId }) });

export class Webhooks extends Resource {
  /** A new endpoint; the answer carries its signing `secret`, once. */
  create({ url, eventTypes, description, rateLimitPerSecond, tenantId }) {
    return this.t.request("POST", "/webhooks", {
      body: wire({ url, eventTypes, description, rateLimitPerSecond, tenantId }),
    });
  }
  list({ tenantId, pageSize = 50 } = {}) {
    return this.t.paginate("/webhooks", wire({ tenantId, pageSize }));
  }
  get(id, { tenantId } = {}) {
    return this.t.request("GET", `/webhooks/${segment(id)}`, byTenant(tenantId));
  }
  /** Change `url`, `description`, `eventTypes`, `enabled`, `rateLimitPerSecond`. */
  update(id, { tenantId, ...fields }) {
    return this.t.request("PATCH", `/webhooks/${segment(id)}`, { ...byTenant(tenantId), body: wire(fields) });
  }
  delete(id, { tenantId } = {}) {
    return this.t.request("DELETE", `/webhooks/${segment(id)}`, byTenant(tenantId));
  }
  rotateSecret(id, { tenantId } = {}) {
    return this.t.request("POST", `/webhooks/${segment(id)}/rotate-secret`, byTenant(tenantId));
  }
  test(id, { tenantId } = {}) {
    return this.t.request("POST", `/webhooks/${segment(id)}/test`, byTenant(tenantId));
  }
  deliveries(id, { status, pageSize = 50, tenantId } = {}) {
    return this.t.paginate(`/webhooks/${segment(id)}/deliveries`, wire({ status, pageSize, tenantId }));
  }
  /** Attempt again every failed delivery created in [since, until); answers `count`. */
  recover(id, { since, until, tenantId }) {
    return this.t.request("POST", `/webhooks/${segment(id)}/recover`, {
      ...byTenant(tenantId),
      body: wire({ since, until }),
    });
  }
}

export class Events extends Resource {
  publish(type, data, { tenantId, idempotencyKey } = {}) {
    return this.t.request("POST", "/events", { body: wire({ type, data, tenantId }), idempotencyKey });
  }
  /** Up to 100 events `{ type, data }`, all or none. */
  publishBatch(events, { tenantId, idempotencyKey } = {}) {
    return this.t.request("POST", "/events/batch", { body: wire({ events, tenantId }), idempotencyKey });
  }
  list({ type, since, until, limit = 50, tenantId } = {}) {
    return this.t.paginate("/events", wire({ type, since, until, limit, tenantId }));
  }
  get(id, { tenantId } = {}) {
    return this.t.request("GET", `/events/${segment(id)}`, byTenant(tenantId));
  }
}

export class Deliveries extends Resource {
  get(id, { tenantId } = {}) {
    return this.t.request("GET", `/deliveries/${segment(id)}`, byTenant(tenantId));
  }
  retry(id, { tenantId } = {}) {
    return this.t.request("POST", `/deliveries/${segment(id)}/retry`, byTenant(tenantId));
  }
  list({ status, eventType, endpointId, since, until, limit = 50, tenantId } = {}) {
    return this.t.paginate("/deliveries", wire({ status, eventType, endpointId, since, until, limit, tenantId }));
  }
  series({ since, until, step, tenantId } = {}) {
    return this.t.request("GET", "/deliveries/series", { query: wire({ since, until, step, tenantId }) });
  }
}

export class ApiKeys extends Resource {
  /** A new key; the answer carries the `key` itself, once. */
  create({ name, scopes, tenantId, environment, expiresAt, rateLimits, metadata }) {
    return this.t.request("POST", "/api-keys", {
      body: wire({ name, scopes, tenantId, environment, expiresAt, rateLimits, metadata }, ["rateLimits"]),
    });
  }
  list({ tenantId, includeDeleted, pageSize = 50 } = {}) {
    return this.t.paginate("/api-keys", wire({ tenantId, includeDeleted, pageSize }));
  }
  get(id, { tenantId } = {}) {
    return this.t.request("GET", `/api-keys/${segment(id)}`, byTenant(tenantId));
  }
  /** Change `name`, `scopes`, `rateLimits`, `active`, `metadata`. */
  update(id, { tenantId, ...fields }) {
    return this.t.request("PATCH", `/api-keys/${segment(id)}`, {
      ...byTenant(tenantId),
      body: wire(fields, ["rateLimits"]),
    });
  }
  /** Revokes the key (at once in every API process). */
  delete(id, { tenantId } = {}) {
    return this.t.request("DELETE", `/api-keys/${segment(id)}`, byTenant(tenantId));
  }
}

export class Tenants extends Resource {
  create({ name, metadata }) {
    return this.t.request("POST", "/tenants", { body: wire({ name, metadata }) });
  }
  list({ includeDeleted, pageSize = 50 } = {}) {
    return this.t.paginate("/tenants", wire({ includeDeleted, pageSize }));
  }
  get(id) {
    return this.t.request("GET", `/tenants/${segment(id)}`);
  }
  /** Change `name`, `metadata`, `status`. */
  update(id, fields) {
    return this.t.request("PATCH", `/tenants/${segment(id)}`, { body: wire(fields) });
  }
  delete(id) {
    return this.t.request("DELETE", `/tenants/${segment(id)}`);
  }
}

export class Usage extends Resource {
  get({ keyId, since, until, tenantId } = {}) {
    return this.t.request("GET", "/usage", { query: wire({ keyId, since, until, tenantId }) });
  }
  series({ keyId, since, until, step, tenantId } = {}) {
    return this.t.request("GET", "/usage/series", { query: wire({ keyId, since, until, step, tenantId }) });
  }
  /** The series as CSV text. */
  exportCsv({ keyId, since, until, step, tenantId } = {}) {
    return this.t.request("GET", "/usage/export.csv", {
      query: wire({ keyId, since, until, step, tenantId }),
      raw: true,
    });
  }
}

export class AuditLog extends Resource {
  list({ action, actorKeyId, targetId, tenantId, since, until, limit = 50 } = {}) {
    return this.t.paginate("/audit-log", wire({ action, actorKeyId, targetId, tenantId, since, until, limit }));
  }
  /** The entries matching the same filters as CSV text. */
  exportCsv(filters = {}) {
    return this.t.request("GET", "/audit-log/export.csv", { query: wire(filters), raw: true });
  }
}

export class Jobs extends Resource {
  get(id) {
    return this.t.request("GET", `/jobs/${segment(id)}`);
  }
  retry(id) {
    return this.t.request("POST", `/jobs/${segment(id)}/retry`);
  }
  list({ queue, state, pageSize = 50 }) {
    return this.t.paginate("/jobs", wire({ queue, state, pageSize }));
  }
  /** Retry failed or dead jobs by `ids` or by `queue` and `state`; answers `count`. */
  retryMany({ ids, queue, state }) {
    return this.t.request("POST", "/jobs/retry", { body: wire({ ids, queue, state }) });
  }
  /** Discard waiting jobs by `ids` or by `queue` and `state`; answers `count`. */
  discard({ ids, queue, state }) {
    return this.t.request("POST", "/jobs/discard", { body: wire({ ids, queue, state }) });
  }
}

export class Queues extends Resource {
  list() {
    return this.t.request("GET", "/queues");
  }
  canary(queue, { holdMs = 0 } = {}) {
    return this.t.request("POST", `/queues/${segment(queue)}/canary`, { body: wire({ holdMs }) });
  }
  getCanary(runId) {
    return this.t.request("GET", `/canaries/${segment(runId)}`);
  }
}

export class Schedules extends Resource {
  list() {
    return this.t.request("GET", "/schedules");
  }
  run(name) {
    return this.t.request("POST", `/schedules/${segment(name)}/run`);
  }
}

export class Pidms extends Resource {
  /** Check keys against PIDKey; with `wait` (≤ 30 s) the answer carries every result if the
   * check finishes in time. */
  check(keys, { wait } = {}) {
    return this.t.request("POST", "/pidms/check", { query: wire({ wait }), body: { keys: keys.join("\n") } });
  }
  getCheck(id) {
    return this.t.request("GET", `/pidms/checks/${segment(id)}`);
  }
  sync({ productFilter } = {}) {
    return this.t.request("POST", "/pidms/sync", { body: wire({ productFilter }) });
  }
  getSync(id) {
    return this.t.request("GET", `/pidms/syncs/${segment(id)}`);
  }
  syncs({ pageSize = 50 } = {}) {
    return this.t.paginate("/pidms/syncs", wire({ pageSize }));
  }
  search({ product, minRemaining, maxRemaining, blocked, pageSize = 50 } = {}) {
    return this.t.paginate("/pidms/keys", wire({ product, minRemaining, maxRemaining, blocked, pageSize }));
  }
  getKey(keyname) {
    return this.t.request("GET", `/pidms/keys/${segment(keyname)}`);
  }
  products() {
    return this.t.request("GET", "/pidms/products");
  }
  /** The keys matching the same filters as `search`, as CSV text. */
  exportCsv(filters = {}) {
    return this.t.request("GET", "/pidms/keys/export.csv", { query: wire(filters), raw: true });
  }
}

export class Sikka extends Resource {
  practices() {
    return this.t.request("GET", "/sikka/practices");
  }
  refreshPractices() {
    return this.t.request("POST", "/sikka/practices/refresh");
  }
  updatePractice(id, { tenantId }) {
    return this.t.request("PATCH", `/sikka/practices/${segment(id)}`, { body: { tenant_id: tenantId ?? null } });
  }
  createWriteback({ officeId, operation, body, targetId }) {
    return this.t.request("POST", "/sikka/writebacks", { body: { ...wire({ officeId, operation, targetId }), body } });
  }
  getWriteback(id) {
    return this.t.request("GET", `/sikka/writebacks/${segment(id)}`);
  }
  writebacks({ status, officeId, pageSize = 50 } = {}) {
    return this.t.paginate("/sikka/writebacks", wire({ status, officeId, pageSize }));
  }
}
