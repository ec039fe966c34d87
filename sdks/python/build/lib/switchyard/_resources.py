"""The API's areas as namespaces. Each method is written once for both clients: it returns
the transport's answer, which the async client's transport makes awaitable. List methods
return iterators over every page."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional
from urllib.parse import quote


def _p(value: str) -> str:
    """An id as a path segment."""
    return quote(str(value), safe="")


def _body(**fields: Any) -> Dict[str, Any]:
    """A JSON body of the fields given (None: left out)."""
    return {k: v for k, v in fields.items() if v is not None}


class _Resource:
    def __init__(self, transport: Any) -> None:
        self._t = transport


class Webhooks(_Resource):
    def create(self, *, url: str, event_types: Iterable[str], description: Optional[str] = None,
               rate_limit_per_second: Optional[int] = None, tenant_id: Optional[str] = None) -> Any:
        """A new endpoint; the answer carries its signing `secret`, once."""
        body = _body(url=url, event_types=list(event_types), description=description,
                     rate_limit_per_second=rate_limit_per_second, tenant_id=tenant_id)
        return self._t.request("POST", "/webhooks", json=body)

    def list(self, *, tenant_id: Optional[str] = None, page_size: int = 50) -> Any:
        return self._t.paginate("/webhooks", {"tenant_id": tenant_id, "page_size": page_size})

    def get(self, endpoint_id: str, *, tenant_id: Optional[str] = None) -> Any:
        return self._t.request("GET", f"/webhooks/{_p(endpoint_id)}", params={"tenant_id": tenant_id})

    def update(self, endpoint_id: str, *, tenant_id: Optional[str] = None, **fields: Any) -> Any:
        """Change `url`, `description`, `event_types`, `enabled`, `rate_limit_per_second`."""
        return self._t.request("PATCH", f"/webhooks/{_p(endpoint_id)}", params={"tenant_id": tenant_id},
                               json=fields)

    def delete(self, endpoint_id: str, *, tenant_id: Optional[str] = None) -> Any:
        return self._t.request("DELETE", f"/webhooks/{_p(endpoint_id)}", params={"tenant_id": tenant_id})

    def rotate_secret(self, endpoint_id: str, *, tenant_id: Optional[str] = None) -> Any:
        return self._t.request("POST", f"/webhooks/{_p(endpoint_id)}/rotate-secret",
                               params={"tenant_id": tenant_id})

    def test(self, endpoint_id: str, *, tenant_id: Optional[str] = None) -> Any:
        return self._t.request("POST", f"/webhooks/{_p(endpoint_id)}/test", params={"tenant_id": tenant_id})

    def deliveries(self, endpoint_id: str, *, status: Optional[str] = None, page_size: int = 50,
                   tenant_id: Optional[str] = None) -> Any:
        return self._t.paginate(f"/webhooks/{_p(endpoint_id)}/deliveries",
                                {"status": status, "page_size": page_size, "tenant_id": tenant_id})

    def recover(self, endpoint_id: str, *, since: str, until: Optional[str] = None,
                tenant_id: Optional[str] = None) -> Any:
        """Attempt again every failed delivery created in [since, until); answers `count`."""
        return self._t.request("POST", f"/webhooks/{_p(endpoint_id)}/recover", params={"tenant_id": tenant_id},
                               json=_body(since=since, until=until))


class Events(_Resource):
    def publish(self, event_type: str, data: Any, *, tenant_id: Optional[str] = None,
                idempotency_key: Optional[str] = None) -> Any:
        return self._t.request("POST", "/events", json=_body(type=event_type, data=data, tenant_id=tenant_id),
                               idempotency_key=idempotency_key)

    def publish_batch(self, events: Iterable[Dict[str, Any]], *, tenant_id: Optional[str] = None,
                      idempotency_key: Optional[str] = None) -> Any:
        """Up to 100 events `{"type", "data"}`, all or none."""
        return self._t.request("POST", "/events/batch", json=_body(events=list(events), tenant_id=tenant_id),
                               idempotency_key=idempotency_key)

    def list(self, *, type: Optional[str] = None, since: Optional[str] = None, until: Optional[str] = None,
             limit: int = 50, tenant_id: Optional[str] = None) -> Any:
        return self._t.paginate("/events", {"type": type, "since": since, "until": until, "limit": limit,
                                            "tenant_id": tenant_id})

    def get(self, event_id: str, *, tenant_id: Optional[str] = None) -> Any:
        return self._t.request("GET", f"/events/{_p(event_id)}", params={"tenant_id": tenant_id})


class Deliveries(_Resource):
    def get(self, delivery_id: str, *, tenant_id: Optional[str] = None) -> Any:
        return self._t.request("GET", f"/deliveries/{_p(delivery_id)}", params={"tenant_id": tenant_id})

    def retry(self, delivery_id: str, *, tenant_id: Optional[str] = None) -> Any:
        return self._t.request("POST", f"/deliveries/{_p(delivery_id)}/retry", params={"tenant_id": tenant_id})

    def list(self, *, status: Optional[str] = None, event_type: Optional[str] = None,
             endpoint_id: Optional[str] = None, since: Optional[str] = None, until: Optional[str] = None,
             limit: int = 50, tenant_id: Optional[str] = None) -> Any:
        return self._t.paginate("/deliveries", {"status": status, "event_type": event_type,
                                                "endpoint_id": endpoint_id, "since": since, "until": until,
                                                "limit": limit, "tenant_id": tenant_id})

    def series(self, *, since: Optional[str] = None, until: Optional[str] = None, step: Optional[int] = None,
               tenant_id: Optional[str] = None) -> Any:
        return self._t.request("GET", "/deliveries/series",
                               params={"since": since, "until": until, "step": step, "tenant_id": tenant_id})


class ApiKeys(_Resource):
    def create(self, *, name: str, scopes: Iterable[str], tenant_id: Optional[str] = None,
               environment: Optional[str] = None, expires_at: Optional[str] = None,
               rate_limits: Optional[Dict[str, int]] = None, metadata: Optional[Dict[str, Any]] = None) -> Any:
        """A new key; the answer carries the `key` itself, once."""
        body = _body(name=name, scopes=list(scopes), tenant_id=tenant_id, environment=environment,
                     expires_at=expires_at, rate_limits=rate_limits, metadata=metadata)
        return self._t.request("POST", "/api-keys", json=body)

    def list(self, *, tenant_id: Optional[str] = None, include_deleted: Optional[bool] = None,
             page_size: int = 50) -> Any:
        return self._t.paginate("/api-keys", {"tenant_id": tenant_id, "include_deleted": include_deleted,
                                              "page_size": page_size})

    def get(self, key_id: str, *, tenant_id: Optional[str] = None) -> Any:
        return self._t.request("GET", f"/api-keys/{_p(key_id)}", params={"tenant_id": tenant_id})

    def update(self, key_id: str, *, tenant_id: Optional[str] = None, **fields: Any) -> Any:
        return self._t.request("PATCH", f"/api-keys/{_p(key_id)}", params={"tenant_id": tenant_id}, json=fields)

    def delete(self, key_id: str, *, tenant_id: Optional[str] = None) -> Any:
        """Revokes the key (at once in every API process)."""
        return self._t.request("DELETE", f"/api-keys/{_p(key_id)}", params={"tenant_id": tenant_id})


class Tenants(_Resource):
    def create(self, *, name: str, metadata: Optional[Dict[str, Any]] = None) -> Any:
        return self._t.request("POST", "/tenants", json=_body(name=name, metadata=metadata))

    def list(self, *, include_deleted: Optional[bool] = None, page_size: int = 50) -> Any:
        return self._t.paginate("/tenants", {"include_deleted": include_deleted, "page_size": page_size})

    def get(self, tenant_id: str) -> Any:
        return self._t.request("GET", f"/tenants/{_p(tenant_id)}")

    def update(self, tenant_id: str, **fields: Any) -> Any:
        return self._t.request("PATCH", f"/tenants/{_p(tenant_id)}", json=fields)

    def delete(self, tenant_id: str) -> Any:
        return self._t.request("DELETE", f"/tenants/{_p(tenant_id)}")


class Usage(_Resource):
    def get(self, *, key_id: Optional[str] = None, since: Optional[str] = None, until: Optional[str] = None,
            tenant_id: Optional[str] = None) -> Any:
        return self._t.request("GET", "/usage", params={"key_id": key_id, "since": since, "until": until,
                                                        "tenant_id": tenant_id})

    def series(self, *, key_id: Optional[str] = None, since: Optional[str] = None, until: Optional[str] = None,
               step: Optional[int] = None, tenant_id: Optional[str] = None) -> Any:
        return self._t.request("GET", "/usage/series", params={"key_id": key_id, "since": since, "until": until,
                                                               "step": step, "tenant_id": tenant_id})

    def export_csv(self, *, key_id: Optional[str] = None, since: Optional[str] = None,
                   until: Optional[str] = None, step: Optional[int] = None,
                   tenant_id: Optional[str] = None) -> Any:
        return self._t.request("GET", "/usage/export.csv", raw=True,
                               params={"key_id": key_id, "since": since, "until": until, "step": step,
                                       "tenant_id": tenant_id})


class AuditLog(_Resource):
    def list(self, *, action: Optional[str] = None, actor_key_id: Optional[str] = None,
             target_id: Optional[str] = None, tenant_id: Optional[str] = None, since: Optional[str] = None,
             until: Optional[str] = None, limit: int = 50) -> Any:
        return self._t.paginate("/audit-log", {"action": action, "actor_key_id": actor_key_id,
                                               "target_id": target_id, "tenant_id": tenant_id,
                                               "since": since, "until": until, "limit": limit})

    def export_csv(self, **filters: Any) -> Any:
        return self._t.request("GET", "/audit-log/export.csv", params=filters, raw=True)


class Jobs(_Resource):
    def get(self, job_id: str) -> Any:
        return self._t.request("GET", f"/jobs/{_p(job_id)}")

    def retry(self, job_id: str) -> Any:
        return self._t.request("POST", f"/jobs/{_p(job_id)}/retry")

    def list(self, *, queue: str, state: str, page_size: int = 50) -> Any:
        return self._t.paginate("/jobs", {"queue": queue, "state": state, "page_size": page_size})

    def retry_many(self, *, ids: Optional[Iterable[str]] = None, queue: Optional[str] = None,
                   state: Optional[str] = None) -> Any:
        """Retry failed or dead jobs by `ids` or by `queue` and `state`; answers `count`."""
        return self._t.request("POST", "/jobs/retry",
                               json=_body(ids=list(ids) if ids is not None else None, queue=queue, state=state))

    def discard(self, *, ids: Optional[Iterable[str]] = None, queue: Optional[str] = None,
                state: Optional[str] = None) -> Any:
        """Discard waiting jobs by `ids` or by `queue` and `state`; answers `count`."""
        return self._t.request("POST", "/jobs/discard",
                               json=_body(ids=list(ids) if ids is not None else None, queue=queue, state=state))


class Queues(_Resource):
    def list(self) -> Any:
        return self._t.request("GET", "/queues")

    def canary(self, queue: str, *, hold_ms: int = 0) -> Any:
        return self._t.request("POST", f"/queues/{_p(queue)}/canary", json={"hold_ms": hold_ms})

    def get_canary(self, run_id: str) -> Any:
        return self._t.request("GET", f"/canaries/{_p(run_id)}")


class Schedules(_Resource):
    def list(self) -> Any:
        return self._t.request("GET", "/schedules")

    def run(self, name: str) -> Any:
        return self._t.request("POST", f"/schedules/{_p(name)}/run")


class Pidms(_Resource):
    def check(self, keys: Iterable[str], *, wait: Optional[int] = None) -> Any:
        """Check keys against PIDKey; with `wait` (≤ 30 s) the answer carries every result
        if the check finishes in time."""
        return self._t.request("POST", "/pidms/check", params={"wait": wait}, json={"keys": "\n".join(keys)})

    def get_check(self, check_id: str) -> Any:
        return self._t.request("GET", f"/pidms/checks/{_p(check_id)}")

    def sync(self, *, product_filter: Optional[str] = None) -> Any:
        return self._t.request("POST", "/pidms/sync", json=_body(product_filter=product_filter))

    def get_sync(self, sync_id: str) -> Any:
        return self._t.request("GET", f"/pidms/syncs/{_p(sync_id)}")

    def syncs(self, *, page_size: int = 50) -> Any:
        return self._t.paginate("/pidms/syncs", {"page_size": page_size})

    def search(self, *, product: Optional[str] = None, min_remaining: Optional[int] = None,
               max_remaining: Optional[int] = None, blocked: Optional[bool] = None, page_size: int = 50) -> Any:
        return self._t.paginate("/pidms/keys", {"product": product, "min_remaining": min_remaining,
                                                "max_remaining": max_remaining, "blocked": blocked,
                                                "page_size": page_size})

    def get_key(self, keyname: str) -> Any:
        return self._t.request("GET", f"/pidms/keys/{_p(keyname)}")

    def products(self) -> Any:
        return self._t.request("GET", "/pidms/products")

    def export_csv(self, **filters: Any) -> Any:
        return self._t.request("GET", "/pidms/keys/export.csv", params=filters, raw=True)


class Sikka(_Resource):
    def practices(self) -> Any:
        return self._t.request("GET", "/sikka/practices")

    def refresh_practices(self) -> Any:
        return self._t.request("POST", "/sikka/practices/refresh")

    def update_practice(self, practice_id: str, *, tenant_id: Optional[str]) -> Any:
        return self._t.request("PATCH", f"/sikka/practices/{_p(practice_id)}", json={"tenant_id": tenant_id})

    def create_writeback(self, *, office_id: str, operation: str, body: Dict[str, Any],
                         target_id: Optional[str] = None) -> Any:
        return self._t.request("POST", "/sikka/writebacks",
                               json=_body(office_id=office_id, operation=operation, body=body, target_id=target_id))

    def get_writeback(self, writeback_id: str) -> Any:
        return self._t.request("GET", f"/sikka/writebacks/{_p(writeback_id)}")

    def writebacks(self, *, status: Optional[str] = None, office_id: Optional[str] = None,
                   page_size: int = 50) -> Any:
        return self._t.paginate("/sikka/writebacks", {"status": status, "office_id": office_id,
                                                      "page_size": page_size})


#: Every operation of the API's OpenAPI document and the SDK method that calls it (a test
#: walks the document and fails when an operation is missing here).
OPERATIONS = {
    "createWebhook": "webhooks.create", "listWebhooks": "webhooks.list", "getWebhook": "webhooks.get",
    "updateWebhook": "webhooks.update", "deleteWebhook": "webhooks.delete",
    "rotateWebhookSecret": "webhooks.rotate_secret", "testWebhook": "webhooks.test",
    "listWebhookDeliveries": "webhooks.deliveries", "recoverWebhook": "webhooks.recover",
    "publishEvent": "events.publish", "publishEventBatch": "events.publish_batch", "listEvents": "events.list",
    "getEvent": "events.get",
    "getDelivery": "deliveries.get", "retryDelivery": "deliveries.retry", "listDeliveries": "deliveries.list",
    "getDeliverySeries": "deliveries.series",
    "createApiKey": "api_keys.create", "listApiKeys": "api_keys.list", "getApiKey": "api_keys.get",
    "updateApiKey": "api_keys.update", "deleteApiKey": "api_keys.delete", "whoAmI": "whoami",
    "createTenant": "tenants.create", "listTenants": "tenants.list", "getTenant": "tenants.get",
    "updateTenant": "tenants.update", "deleteTenant": "tenants.delete",
    "getUsage": "usage.get", "getUsageSeries": "usage.series", "exportUsage": "usage.export_csv",
    "listAuditLog": "audit_log.list", "exportAuditLog": "audit_log.export_csv",
    "getJob": "jobs.get", "retryJob": "jobs.retry", "listJobs": "jobs.list", "retryJobs": "jobs.retry_many",
    "discardJobs": "jobs.discard",
    "listQueues": "queues.list", "sendCanary": "queues.canary", "getCanary": "queues.get_canary",
    "listSchedules": "schedules.list", "runSchedule": "schedules.run",
    "checkPidmsKeys": "pidms.check", "getPidmsCheck": "pidms.get_check", "syncPidms": "pidms.sync",
    "getPidmsSync": "pidms.get_sync", "listPidmsSyncs": "pidms.syncs", "searchPidmsKeys": "pidms.search",
    "getPidmsKey": "pidms.get_key", "listPidmsProducts": "pidms.products", "exportPidmsKeys": "pidms.export_csv",
    "listSikkaPractices": "sikka.practices", "refreshSikkaPractices": "sikka.refresh_practices",
    "updateSikkaPractice": "sikka.update_practice", "createSikkaWriteback": "sikka.create_writeback",
    "getSikkaWriteback": "sikka.get_writeback", "listSikkaWritebacks": "sikka.writebacks",
}
