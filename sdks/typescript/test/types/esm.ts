// Compiled by types.test.js (tsc --noEmit --strict): the declarations as a TypeScript user meets them.
import { Switchyard, NotFoundError, RateLimitError, verifyWebhook, OPERATIONS } from "switchyard";
const client = new Switchyard({ apiKey: "sy_test_x", baseUrl: "http://127.0.0.1:8080", timeoutMs: 1000, maxRetries: 1 });
async function main(): Promise<void> {
  const ep = await client.webhooks.create({ url: "https://x", eventTypes: ["a.*"] });
  const id: string = ep.id; const secret: string = ep.secret;
  for await (const d of client.webhooks.deliveries(id)) { const s: string = d.status; console.log(s); }
  try { await client.events.get("evt_x"); } catch (e) { if (e instanceof RateLimitError) { const n: number | undefined = e.retryAfter; console.log(n); } if (e instanceof NotFoundError) console.log(e.requestId); }
  const ev = await verifyWebhook("{}", new Headers(), secret);
  console.log(ev.type, OPERATIONS.createWebhook);
  await client.apiKeys.create({ name: "n", scopes: ["a"], rateLimits: { perDay: 3 } });
}
void main();
