"""Errors: one class per kind of answer, each with the problem's title, detail and the
request id Switchyard gave the request (quote it when asking for help)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional


class SwitchyardError(Exception):
    """Any error from this client."""

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        title: Optional[str] = None,
        detail: Optional[str] = None,
        request_id: Optional[str] = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.detail = detail
        self.request_id = request_id
        self.body = body


class APIConnectionError(SwitchyardError):
    """Switchyard could not be reached, or the connection broke before an answer."""


class AuthenticationError(SwitchyardError):
    """401: no key, an unknown, revoked, expired or suspended key."""


class PermissionDeniedError(SwitchyardError):
    """403: the key lacks the scope the operation needs."""


class NotFoundError(SwitchyardError):
    """404: no such resource (or it belongs to another tenant)."""


class ConflictError(SwitchyardError):
    """409: the resource is not in a state the operation applies to."""


class ValidationError(SwitchyardError):
    """422: the request was refused; `errors` names each bad field."""

    def __init__(self, message: str, *, errors: List[Dict[str, str]], **kw: Any) -> None:
        super().__init__(message, **kw)
        self.errors = errors


class RateLimitError(SwitchyardError):
    """429: over a rate limit or quota; `retry_after` is in seconds."""

    def __init__(self, message: str, *, retry_after: Optional[float], **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(SwitchyardError):
    """5xx: Switchyard failed or is unavailable (503 is retried automatically)."""


class WebhookVerificationError(SwitchyardError):
    """A webhook's signature or timestamp did not check out."""


_BY_STATUS = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
}


def error_for(status: int, body: Any, request_id: Optional[str], retry_after: Optional[float]) -> SwitchyardError:
    """The error an answer with `status` and a problem+json `body` stands for."""
    problem = body if isinstance(body, dict) else {}
    title = problem.get("title")
    detail = problem.get("detail") or (body if isinstance(body, str) else None)
    message = f"{status} {title or ''}: {detail or ''}".strip()
    if request_id:
        message += f" (request {request_id})"
    kw: Dict[str, Any] = dict(status=status, title=title, detail=detail, request_id=request_id, body=body)
    if status == 422:
        return ValidationError(message, errors=list(problem.get("errors") or []), **kw)
    if status == 429:
        return RateLimitError(message, retry_after=retry_after, **kw)
    if status >= 500:
        return ServerError(message, **kw)
    return _BY_STATUS.get(status, SwitchyardError)(message, **kw)
