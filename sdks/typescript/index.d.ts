// Types of the Switchyard client. Options are camelCase; answers are as the REST API writes
// them (snake_case), described here for the answers used most: every other field is there too.

export declare const VERSION: string;
export declare const DEFAULT_BASE_URL: string;
export declare const TOLERANCE_SECONDS: number;
/** Every API operation (its OpenAPI operationId) and the method that calls it. */
export declare const OPERATIONS: Readonly<Record<string, string>>;

export interface ClientOptions {
  /** A `sy_live_…` or `sy_test_…` key. */
  apiKey: string;
  /** Default `http://127.0.0.1:8080`. */
  baseUrl?: string;
  /** Per request; default 30 000. */
  timeoutMs?: number;
  /** Retries of 429 (after Retry-After), 503 and broken connections; default 2. */
  maxRetries?: number;
  /** A fetch to use instead of the platform's. */
  fetch?: typeof globalThis.fetch;
}

/** An answer's JSON object. */
export interface Answer {
  [field: string]: unknown;
}

export interface Endpoint extends Answer {
  id: string;
  url: string;
  description: string | null;
  event_types: string[];
  status: "enabled" | "disabled";
  failure_count: number;
  rate_limit_per_second: number | null;
  tenant_id: string | null;
  previous_secret_valid_until: string | null;
  created_at: string;
  updated_at: string;
}
/** Only on create: the signing secret, shown once. */
export interface EndpointCreated extends Endpoint {
  secret: string;
}
export interface SecretRotated extends Answer {
  secret: string;
  previous_valid_until: string;
}
export interface Delivery extends Answer {
  id: string;
  event_id: string;
  endpoint_id: string;
  status: "pending" | "delivering" | "retrying" | "delivered" | "failed";
  attempt_count: number;
  max_attempts: number;
  next_attempt_at: string | null;
  last_status_code: number | null;
  last_error: string | null;
  created_at: string;
  delivered_at: string | null;
}
export interface Published extends Answer {
  id: string;
  deliveries: Answer[];
}
export interface Event extends Answer {
  id: string;
  type: string;
  created_at: string;
  tenant_id: string | null;
  delivery_count: number;
  payload?: { type: string; timestamp: string; data: unknown };
}
export interface ApiKey extends Answer {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  environment: string;
  status: string;
  expires_at: string | null;
  created_at: string;
}
/** Only on create: the key itself, shown once. */
export interface ApiKeyCreated extends ApiKey {
  key: string;
}
export interface Tenant extends Answer {
  id: string;
  name: string;
  status: string;
  metadata: Record<string, unknown>;
  created_at: string;
}
export interface Job extends Answer {
  id: string;
  queue: string;
  status: string;
  attempts: number;
}
export interface Count extends Answer {
  count: number;
}

export interface RateLimits {
  perMinute?: number;
  perHour?: number;
  perDay?: number;
  perMonth?: number;
}
interface ByTenant {
  tenantId?: string;
}
type List<T> = AsyncIterableIterator<T>;

declare class Webhooks {
  create(options: { url: string; eventTypes: string[]; description?: string; rateLimitPerSecond?: number } & ByTenant): Promise<EndpointCreated>;
  list(options?: { pageSize?: number } & ByTenant): List<Endpoint>;
  get(id: string, options?: ByTenant): Promise<Endpoint>;
  update(id: string, fields: { url?: string; eventTypes?: string[]; description?: string; enabled?: boolean; rateLimitPerSecond?: number } & ByTenant): Promise<Endpoint>;
  delete(id: string, options?: ByTenant): Promise<void>;
  rotateSecret(id: string, options?: ByTenant): Promise<SecretRotated>;
  test(id: string, options?: ByTenant): Promise<{ event_id: string; delivery_id: string } & Answer>;
  deliveries(id: string, options?: { status?: string; pageSize?: number } & ByTenant): List<Delivery>;
  recover(id: string, options: { since: string; until?: string } & ByTenant): Promise<Count>;
}
declare class Events {
  publish(type: string, data: unknown, options?: { idempotencyKey?: string } & ByTenant): Promise<Published>;
  publishBatch(events: { type: string; data: unknown }[], options?: { idempotencyKey?: string } & ByTenant): Promise<{ events: Published[] } & Answer>;
  list(options?: { type?: string; since?: string; until?: string; limit?: number } & ByTenant): List<Event>;
  get(id: string, options?: ByTenant): Promise<Event>;
}
declare class Deliveries {
  get(id: string, options?: ByTenant): Promise<Delivery & { attempts: Answer[] }>;
  retry(id: string, options?: ByTenant): Promise<Answer>;
  list(options?: { status?: string; eventType?: string; endpointId?: string; since?: string; until?: string; limit?: number } & ByTenant): List<Delivery>;
  series(options?: { since?: string; until?: string; step?: number } & ByTenant): Promise<{ points: Answer[] } & Answer>;
}
declare class ApiKeys {
  create(options: { name: string; scopes: string[]; environment?: string; expiresAt?: string; rateLimits?: RateLimits; metadata?: Record<string, unknown> } & ByTenant): Promise<ApiKeyCreated>;
  list(options?: { includeDeleted?: boolean; pageSize?: number } & ByTenant): List<ApiKey>;
  get(id: string, options?: ByTenant): Promise<ApiKey>;
  update(id: string, fields: { name?: string; scopes?: string[]; rateLimits?: RateLimits; active?: boolean; metadata?: Record<string, unknown> } & ByTenant): Promise<ApiKey>;
  delete(id: string, options?: ByTenant): Promise<void>;
}
declare class Tenants {
  create(options: { name: string; metadata?: Record<string, unknown> }): Promise<Tenant>;
  list(options?: { includeDeleted?: boolean; pageSize?: number }): List<Tenant>;
  get(id: string): Promise<Tenant>;
  update(id: string, fields: { name?: string; metadata?: Record<string, unknown>; status?: string }): Promise<Tenant>;
  delete(id: string): Promise<void>;
}
interface UsageQuery extends ByTenant {
  keyId?: string;
  since?: string;
  until?: string;
}
declare class Usage {
  get(options?: UsageQuery): Promise<{ keys: Answer[] } & Answer>;
  series(options?: UsageQuery & { step?: number }): Promise<{ points: Answer[] } & Answer>;
  exportCsv(options?: UsageQuery & { step?: number }): Promise<string>;
}
interface AuditQuery extends ByTenant {
  action?: string;
  actorKeyId?: string;
  targetId?: string;
  since?: string;
  until?: string;
}
declare class AuditLog {
  list(options?: AuditQuery & { limit?: number }): List<Answer>;
  exportCsv(options?: AuditQuery): Promise<string>;
}
interface JobSelection {
  ids?: string[];
  queue?: string;
  state?: string;
}
declare class Jobs {
  get(id: string): Promise<Job>;
  retry(id: string): Promise<Job>;
  list(options: { queue: string; state: string; pageSize?: number }): List<Job>;
  retryMany(selection: JobSelection): Promise<Count>;
  discard(selection: JobSelection): Promise<Count>;
}
declare class Queues {
  list(): Promise<{ queues: Answer[] } & Answer>;
  canary(queue: string, options?: { holdMs?: number }): Promise<{ run_id: string; job_id: string } & Answer>;
  getCanary(runId: string): Promise<Answer>;
}
declare class Schedules {
  list(): Promise<Answer[]>;
  run(name: string): Promise<Answer>;
}
interface KeySearch {
  product?: string;
  minRemaining?: number;
  maxRemaining?: number;
  blocked?: boolean;
}
declare class Pidms {
  check(keys: string[], options?: { wait?: number }): Promise<Answer>;
  getCheck(id: string): Promise<Answer>;
  sync(options?: { productFilter?: string }): Promise<Answer>;
  getSync(id: string): Promise<Answer>;
  syncs(options?: { pageSize?: number }): List<Answer>;
  search(options?: KeySearch & { pageSize?: number }): List<Answer>;
  getKey(keyname: string): Promise<Answer>;
  products(): Promise<{ products: Answer[] } & Answer>;
  exportCsv(options?: KeySearch): Promise<string>;
}
declare class Sikka {
  practices(): Promise<Answer[]>;
  refreshPractices(): Promise<Answer>;
  updatePractice(id: string, options: { tenantId: string | null }): Promise<Answer>;
  createWriteback(options: { officeId: string; operation: string; body: Record<string, unknown>; targetId?: string }): Promise<Answer>;
  getWriteback(id: string): Promise<Answer>;
  writebacks(options?: { status?: string; officeId?: string; pageSize?: number }): List<Answer>;
}

export declare class Switchyard {
  constructor(options: ClientOptions);
  readonly webhooks: Webhooks;
  readonly events: Events;
  readonly deliveries: Deliveries;
  readonly apiKeys: ApiKeys;
  readonly tenants: Tenants;
  readonly usage: Usage;
  readonly auditLog: AuditLog;
  readonly jobs: Jobs;
  readonly queues: Queues;
  readonly schedules: Schedules;
  readonly pidms: Pidms;
  readonly sikka: Sikka;
  /** The calling key: its id, scopes, environment and tenant. */
  whoami(): Promise<{ key_id: string; scopes: string[]; environment: string; tenant_id: string | null } & Answer>;
}

export interface ErrorOptions {
  status?: number;
  title?: string;
  detail?: string;
  requestId?: string;
  body?: unknown;
}
export declare class SwitchyardError extends Error {
  constructor(message: string, options?: ErrorOptions);
  readonly status?: number;
  readonly title?: string;
  readonly detail?: string;
  /** Switchyard's id of the request (quote it when asking for help). */
  readonly requestId?: string;
  readonly body?: unknown;
}
export declare class APIConnectionError extends SwitchyardError {}
export declare class AuthenticationError extends SwitchyardError {}
export declare class PermissionDeniedError extends SwitchyardError {}
export declare class NotFoundError extends SwitchyardError {}
export declare class ConflictError extends SwitchyardError {}
export declare class ValidationError extends SwitchyardError {
  readonly errors: { field: string; message: string }[];
}
export declare class RateLimitError extends SwitchyardError {
  /** Seconds to wait, from Retry-After. */
  readonly retryAfter?: number;
}
export declare class ServerError extends SwitchyardError {}
export declare class WebhookVerificationError extends SwitchyardError {}

export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;
/**
 * The delivery's JSON once its signature (any of them: during a rotation there are two) and
 * timestamp check out; rejects with `WebhookVerificationError` otherwise.
 */
export declare function verifyWebhook(
  body: string | Uint8Array | ArrayBuffer,
  headers: WebhookHeaders,
  secret: string,
  options?: { toleranceSeconds?: number; now?: number },
): Promise<{ type: string; timestamp: string; data: unknown } & Answer>;
