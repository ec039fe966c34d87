// Errors: one class per kind of answer, each with the problem's title, detail and the
// request id Switchyard gave the request (quote it when asking for help).

export class SwitchyardError extends Error {
  constructor(message, { status, title, detail, requestId, body } = {}) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.requestId = requestId;
    this.body = body;
  }
}

/** Switchyard could not be reached, or the connection broke before an answer. */
export class APIConnectionError extends SwitchyardError {}
/** 401: no key, an unknown, revoked, expired or suspended key. */
export class AuthenticationError extends SwitchyardError {}
/** 403: the key lacks the scope the operation needs. */
export class PermissionDeniedError extends SwitchyardError {}
/** 404: no such resource (or it belongs to another tenant). */
export class NotFoundError extends SwitchyardError {}
/** 409: the resource is not in a state the operation applies to. */
export class ConflictError extends SwitchyardError {}

/** 422: the request was refused; `errors` names each bad field. */
export class ValidationError extends SwitchyardError {
  constructor(message, options = {}) {
    super(message, options);
    this.errors = options.errors ?? [];
  }
}

/** 429: over a rate limit or quota; `retryAfter` is in seconds. */
export class RateLimitError extends SwitchyardError {
  constructor(message, options = {}) {
    super(message, options);
    this.retryAfter = options.retryAfter;
  }
}

/** 5xx: Switchyard failed or is unavailable (503 is retried automatically). */
export class ServerError extends SwitchyardError {}
/** A webhook's signature or timestamp did not check out. */
export class WebhookVerificationError extends SwitchyardError {}

const BY_STATUS = {
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
};

/** The error an answer with `status` and a problem+json `body` stands for. */
export function errorFor(status, body, requestId, retryAfter) {
  const problem = body && typeof body === "object" ? body : {};
  const title = problem.title;
  const detail = problem.detail ?? (typeof body === "string" && body ? body : undefined);
  let message = `${status} ${title ?? ""}: ${detail ?? ""}`.trim();
  if (requestId) message += ` (request ${requestId})`;
  const options = { status, title, detail, requestId, body };
  if (status === 422) return new ValidationError(message, { ...options, errors: problem.errors ?? [] });
  if (status === 429) return new RateLimitError(message, { ...options, retryAfter });
  if (status >= 500) return new ServerError(message, options);
  const Kind = BY_STATUS[status] ?? SwitchyardError;
  return new Kind(message, options);
}
