// The client: one transport (key, timeout, retries) shared by every namespace.
import { Transport } from "./http.js";
import {
  ApiKeys, AuditLog, Deliveries, Events, Jobs, Pidms, Queues, Schedules, Sikka, Tenants, Usage, Webhooks,
} from "./resources.js";

export class Switchyard {
  /**
   * `maxRetries` retries of 429 (after Retry-After), 503 and broken connections, with
   * jittered backoff; POSTs keep one Idempotency-Key across retries.
   */
  constructor(options = {}) {
    const transport = new Transport(options);
    Object.defineProperty(this, "transport", { value: transport, enumerable: false });
    this.webhooks = new Webhooks(transport);
    this.events = new Events(transport);
    this.deliveries = new Deliveries(transport);
    this.apiKeys = new ApiKeys(transport);
    this.tenants = new Tenants(transport);
    this.usage = new Usage(transport);
    this.auditLog = new AuditLog(transport);
    this.jobs = new Jobs(transport);
    this.queues = new Queues(transport);
    this.schedules = new Schedules(transport);
    this.pidms = new Pidms(transport);
    this.sikka = new Sikka(transport);
  }

  /** The calling key: its id, scopes, environment and tenant. */
  whoami() {
    return this.transport.request("GET", "/whoami");
  }
}
