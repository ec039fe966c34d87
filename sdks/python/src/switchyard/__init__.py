"""Switchyard's Python client: `Switchyard` and `AsyncSwitchyard`, typed errors, automatic
retries, iterators over lists, and `verify_webhook` for the receiving side."""

from ._client import AsyncSwitchyard, Switchyard
from ._errors import (
    APIConnectionError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SwitchyardError,
    ValidationError,
    WebhookVerificationError,
)
from ._models import ApiKey, Delivery, Endpoint, Event, Job, Model, Tenant
from ._resources import OPERATIONS
from ._webhooks import verify_webhook

__version__ = "0.1.0"

__all__ = [
    "Switchyard", "AsyncSwitchyard", "SwitchyardError", "AuthenticationError", "PermissionDeniedError",
    "NotFoundError", "ConflictError", "ValidationError", "RateLimitError", "ServerError",
    "APIConnectionError", "WebhookVerificationError", "verify_webhook", "OPERATIONS", "Model", "Endpoint",
    "Delivery", "Event", "ApiKey", "Tenant", "Job",
]
