"""The two clients: `Switchyard` (blocking) and `AsyncSwitchyard` (asyncio), with the same
namespaces; both usable as context managers."""

from __future__ import annotations

from typing import Any

from ._http import DEFAULT_BASE_URL, AsyncTransport, SyncTransport
from ._resources import (
    ApiKeys, AuditLog, Deliveries, Events, Jobs, Pidms, Queues, Schedules, Sikka, Tenants, Usage, Webhooks,
)


class _Namespaces:
    def _mount(self, transport: Any) -> None:
        self.webhooks = Webhooks(transport)
        self.events = Events(transport)
        self.deliveries = Deliveries(transport)
        self.api_keys = ApiKeys(transport)
        self.tenants = Tenants(transport)
        self.usage = Usage(transport)
        self.audit_log = AuditLog(transport)
        self.jobs = Jobs(transport)
        self.queues = Queues(transport)
        self.schedules = Schedules(transport)
        self.pidms = Pidms(transport)
        self.sikka = Sikka(transport)


class Switchyard(_Namespaces):
    """A blocking client. `max_retries` retries of 429 (after Retry-After), 503 and broken
    connections, with jittered backoff; POSTs keep one Idempotency-Key across retries."""

    def __init__(self, api_key: str, base_url: str = DEFAULT_BASE_URL, timeout: float = 30.0,
                 max_retries: int = 2) -> None:
        self._transport = SyncTransport(api_key, base_url, timeout, max_retries)
        self._mount(self._transport)

    def whoami(self) -> Any:
        """The calling key: its id, scopes, environment and tenant."""
        return self._transport.request("GET", "/whoami")

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> "Switchyard":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncSwitchyard(_Namespaces):
    """The asyncio twin of `Switchyard`: every method is awaited; lists are async iterators."""

    def __init__(self, api_key: str, base_url: str = DEFAULT_BASE_URL, timeout: float = 30.0,
                 max_retries: int = 2) -> None:
        self._transport = AsyncTransport(api_key, base_url, timeout, max_retries)
        self._mount(self._transport)

    async def whoami(self) -> Any:
        return await self._transport.request("GET", "/whoami")

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> "AsyncSwitchyard":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


__all__ = ["Switchyard", "AsyncSwitchyard"]
