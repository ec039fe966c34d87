"""Sending requests: the key, timeouts, typed errors, and retries with jittered backoff on
429 (honouring Retry-After), 503 and connection errors. A POST carries one Idempotency-Key
reused across its retries, so a retry never writes twice."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any, AsyncIterator, Dict, Iterator, Mapping, Optional, Tuple

import httpx

from ._errors import APIConnectionError, SwitchyardError, error_for
from ._models import Model

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
RETRIED_STATUSES = (429, 503)
USER_AGENT = "switchyard-python/0.1.0"


def _clean(params: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """Query parameters without the ones left out; booleans as the API spells them."""
    out: Dict[str, Any] = {}
    for k, v in (params or {}).items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else v
    return out


def _retry_after(resp: httpx.Response) -> Optional[float]:
    value = resp.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _delay(attempt: int, retry_after: Optional[float]) -> float:
    """Seconds before retry `attempt` (1-based): Retry-After when given, else 0.5 s doubling
    to 8 s; ±25 % jitter either way so clients that failed together do not return together."""
    base = retry_after if retry_after is not None else min(8.0, 0.5 * 2 ** (attempt - 1))
    return base * random.uniform(1.0, 1.25) if retry_after is not None else base * random.uniform(0.75, 1.25)


def _decode(resp: httpx.Response) -> Any:
    if resp.status_code == 204 or not resp.content:
        return None
    ctype = resp.headers.get("content-type", "")
    if "json" in ctype:
        return Model.wrap(resp.json())
    return resp.text


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    raise error_for(resp.status_code, body, resp.headers.get("x-request-id"), _retry_after(resp))


class _Base:
    def __init__(
        self,
        api_key: str,
        base_url: str,
        timeout: float,
        max_retries: int,
    ) -> None:
        if not api_key:
            raise SwitchyardError("an api_key is required (a `sy_live_…` or `sy_test_…` key)")
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self._headers = {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}

    def _prepare(
        self, method: str, path: str, idempotency_key: Optional[str]
    ) -> Tuple[str, Dict[str, str]]:
        headers = dict(self._headers)
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        return f"{self.base_url}/api/v1{path}", headers


class SyncTransport(_Base):
    def __init__(self, api_key: str, base_url: str, timeout: float, max_retries: int) -> None:
        super().__init__(api_key, base_url, timeout, max_retries)
        self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        idempotency_key: Optional[str] = None,
        raw: bool = False,
    ) -> Any:
        url, headers = self._prepare(method, path, idempotency_key)
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._client.request(method, url, params=_clean(params), json=json, headers=headers)
            except httpx.TransportError as e:
                if attempt > self.max_retries:
                    raise APIConnectionError(f"{method} {path}: {e}") from e
                time.sleep(_delay(attempt, None))
                continue
            if resp.status_code in RETRIED_STATUSES and attempt <= self.max_retries:
                time.sleep(_delay(attempt, _retry_after(resp)))
                continue
            _raise_for(resp)
            return resp.text if raw else _decode(resp)

    def paginate(self, path: str, params: Optional[Mapping[str, Any]] = None) -> Iterator[Model]:
        """Every item of a list, page after page (offset pages or keyset cursors)."""
        params = dict(params or {})
        while True:
            page = self.request("GET", path, params=params)
            yield from page["items"]
            if "next_cursor" in page:
                if not page["next_cursor"]:
                    return
                params["before"] = page["next_cursor"]
            else:
                if page["page"] * page["page_size"] >= page["total"] or not page["items"]:
                    return
                params["page"] = page["page"] + 1
                params["page_size"] = page["page_size"]


class AsyncTransport(_Base):
    def __init__(self, api_key: str, base_url: str, timeout: float, max_retries: int) -> None:
        super().__init__(api_key, base_url, timeout, max_retries)
        self._client = httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        idempotency_key: Optional[str] = None,
        raw: bool = False,
    ) -> Any:
        url, headers = self._prepare(method, path, idempotency_key)
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = await self._client.request(method, url, params=_clean(params), json=json, headers=headers)
            except httpx.TransportError as e:
                if attempt > self.max_retries:
                    raise APIConnectionError(f"{method} {path}: {e}") from e
                await asyncio.sleep(_delay(attempt, None))
                continue
            if resp.status_code in RETRIED_STATUSES and attempt <= self.max_retries:
                await asyncio.sleep(_delay(attempt, _retry_after(resp)))
                continue
            _raise_for(resp)
            return resp.text if raw else _decode(resp)

    async def paginate(self, path: str, params: Optional[Mapping[str, Any]] = None) -> AsyncIterator[Model]:
        params = dict(params or {})
        while True:
            page = await self.request("GET", path, params=params)
            for item in page["items"]:
                yield item
            if "next_cursor" in page:
                if not page["next_cursor"]:
                    return
                params["before"] = page["next_cursor"]
            else:
                if page["page"] * page["page_size"] >= page["total"] or not page["items"]:
                    return
                params["page"] = page["page"] + 1
                params["page_size"] = page["page_size"]
