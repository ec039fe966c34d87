// Compiled by types.test.js: the declarations as a CommonJS TypeScript user requires them
// (resolved through the package's "require" condition to dist/index.d.cts).
import sy = require("switchyard");

const client = new sy.Switchyard({ apiKey: "sy_test_x" });
export async function cjsUser(): Promise<number | undefined> {
  const tenant: sy.Tenant = await client.tenants.create({ name: "t" });
  const error: sy.SwitchyardError = new sy.RateLimitError("slow", { status: 429 });
  const verified = await sy.verifyWebhook(new Uint8Array(), { "webhook-id": tenant.id }, "whsec_x");
  return error instanceof sy.RateLimitError ? error.retryAfter : verified.type.length;
}
