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

    def _after_failure(self, method: str, path: str, attempt: int, error: httpx.TransportError) -> float:
        """The wait before retrying a broken connection, or the error once retries are spent."""
        if attempt > self.max_retries:
            raise APIConnectionError(f"{method} {path}: {error}") from error
        return _delay(attempt, None)

    def _after_answer(self, resp: httpx.Response, attempt: int, raw: bool) -> Tuple[Optional[float], Any]:
        """(the wait before retrying, None) for a retried status with retries left; else
        (None, the decoded answer), raising the typed error of a failed one."""
        if resp.status_code in RETRIED_STATUSES and attempt <= self.max_retries:
            return _delay(attempt, _retry_after(resp)), None
        _raise_for(resp)
        return None, resp.text if raw else _decode(resp)


def _next_page(page: Any, params: Dict[str, Any]) -> bool:
    """Moves `params` to the page after `page` (keyset cursor or offset); False at the end."""
    if "next_cursor" in page:
        if not page["next_cursor"]:
            return False
        params["before"] = page["next_cursor"]
        return True
    if page["page"] * page["page_size"] >= page["total"] or not page["items"]:
        return False
    params["page"] = page["page"] + 1
    params["page_size"] = page["page_size"]
    return True


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
                time.sleep(self._after_failure(method, path, attempt, e))
                continue
            wait, answer = self._after_answer(resp, attempt, raw)
            if wait is None:
                return answer
            time.sleep(wait)

    def paginate(self, path: str, params: Optional[Mapping[str, Any]] = None) -> Iterator[Model]:
        """Every item of a list, page after page (offset pages or keyset cursors)."""
        params = dict(params or {})
        while True:
            page = self.request("GET", path, params=params)
            yield from page["items"]
            if not _next_page(page, params):
                return


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
                await asyncio.sleep(self._after_failure(method, path, attempt, e))
                continue
            wait, answer = self._after_answer(resp, attempt, raw)
            if wait is None:
                return answer
            await asyncio.sleep(wait)

    async def paginate(self, path: str, params: Optional[Mapping[str, Any]] = None) -> AsyncIterator[Model]:
        params = dict(params or {})
        while True:
            page = await self.request("GET", path, params=params)
            for item in page["items"]:
                yield item
            if not _next_page(page, params):
                return
