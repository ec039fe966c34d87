// Switchyard for JavaScript and TypeScript: the client, its errors, webhook verification,
// and the map from every API operation to its method.
export { Switchyard } from "./client.js";
export { DEFAULT_BASE_URL, VERSION } from "./http.js";
export {
  APIConnectionError, AuthenticationError, ConflictError, NotFoundError, PermissionDeniedError,
  RateLimitError, ServerError, SwitchyardError, ValidationError, WebhookVerificationError,
} from "./errors.js";
export { TOLERANCE_SECONDS, verifyWebhook } from "./webhooks.js";
export { OPERATIONS } from "./operations.js";
