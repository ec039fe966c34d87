"""The Python SDK against a real `switchyard dev`: every operation of the OpenAPI document
has a method; every namespace's happy path; each error class from a real answer; retries
that wait out Retry-After; an idempotent retry after a dropped connection; lists over
several pages; webhook verification of real deliveries, a tampered one, and a rotation."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
import uuid

import pytest

import switchyard
from switchyard import (
    APIConnectionError, AsyncSwitchyard, AuthenticationError, ConflictError, NotFoundError,
    PermissionDeniedError, RateLimitError, ServerError, Switchyard, ValidationError, WebhookVerificationError,
    verify_webhook,
)

from conftest import free_port, spec


@pytest.fixture
def client(server):
    with Switchyard(api_key=server.admin_key, base_url=server.base_url) as c:
        yield c


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def test_every_operation_has_a_method(server, client):
    ops = [op["operationId"] for methods in spec(server)["paths"].values() for op in methods.values()]
    assert len(ops) > 50
    missing = [o for o in ops if o not in switchyard.OPERATIONS]
    assert not missing, f"operations without an SDK method: {missing}"
    for op, path in switchyard.OPERATIONS.items():
        target = client
        for part in path.split("."):
            target = getattr(target, part)
        assert callable(target), f"{op} → {path}"
    assert set(switchyard.OPERATIONS) == set(ops), "methods for operations that are gone"


def test_webhooks_events_and_deliveries(client, receiver):
    ep = client.webhooks.create(url=receiver.url, event_types=["sdk.*"], description="sdk")
    assert ep.id.startswith("ep_") and ep.secret.startswith("whsec_")
    assert client.webhooks.get(ep.id).url == receiver.url
    assert client.webhooks.update(ep.id, description="changed").description == "changed"
    assert ep.id in [e.id for e in client.webhooks.list()]
    sent = client.events.publish("sdk.one", {"n": 1})
    batch = client.events.publish_batch([{"type": "sdk.two", "data": {}}, {"type": "sdk.three", "data": {}}])
    assert len(batch.events) == 2
    tested = client.webhooks.test(ep.id)
    receiver.wait(4)
    event = client.events.get(sent.id)
    assert event.payload["data"] == {"n": 1} and event.type == "sdk.one"
    assert sent.id in [e.id for e in client.events.list(type="sdk.one")]
    d = client.deliveries.get(tested.delivery_id)
    assert d.endpoint_id == ep.id
    deadline = time.time() + 10
    while client.deliveries.get(tested.delivery_id).status != "delivered":
        assert time.time() < deadline
        time.sleep(0.1)
    assert any(x.id == tested.delivery_id for x in client.webhooks.deliveries(ep.id))
    assert any(x.endpoint_id == ep.id for x in client.deliveries.list(endpoint_id=ep.id))
    assert sum(p.attempts for p in client.deliveries.series().points) >= 4
    with pytest.raises(ConflictError):
        client.deliveries.retry(tested.delivery_id)  # delivered: not retryable
    assert client.webhooks.recover(ep.id, since="2020-01-01T00:00:00Z").count == 0
    rotated = client.webhooks.rotate_secret(ep.id)
    assert rotated.secret != ep.secret
    client.webhooks.delete(ep.id)
    with pytest.raises(NotFoundError):
        client.webhooks.get(ep.id)


def test_keys_tenants_usage_audit(client):
    key = client.api_keys.create(name="sdk", scopes=["usage:read"], rate_limits={"per_day": 1000})
    assert key.key.startswith("sy_") and client.api_keys.get(key.id).name == "sdk"
    assert client.api_keys.update(key.id, name="renamed").name == "renamed"
    assert key.id in [k.id for k in client.api_keys.list()]
    client.api_keys.delete(key.id)
    tenant = client.tenants.create(name="sdk tenant", metadata={"tier": "gold"})
    assert client.tenants.get(tenant.id).metadata == {"tier": "gold"}
    assert client.tenants.update(tenant.id, name="renamed").name == "renamed"
    assert tenant.id in [t.id for t in client.tenants.list()]
    client.tenants.delete(tenant.id)
    me = client.whoami()
    assert "admin" in me.scopes
    assert isinstance(client.usage.get().keys, list)
    assert len(client.usage.series(step=3600).points) == 24
    assert client.usage.export_csv(step=3600).startswith("at,key_id,")
    created = [e for e in client.audit_log.list(action="tenant.created", target_id=tenant.id)]
    assert len(created) == 1
    assert client.audit_log.export_csv(action="tenant.created").startswith("id,at,")


def wait_until(what, check, within: float = 15.0):
    deadline = time.time() + within
    while True:
        value = check()
        if value:
            return value
        assert time.time() < deadline, f"{what} within {within} s"
        time.sleep(0.1)


def test_jobs_queues_schedules(client):
    queues = client.queues.list()
    assert {q.name for q in queues.queues} == {"webhooks", "pidms", "sikka", "maintenance"}
    canary = client.queues.canary("maintenance")
    assert client.queues.get_canary(canary.run_id).run_id == canary.run_id
    assert client.jobs.get(canary.job_id).queue == "maintenance"
    assert isinstance(list(client.jobs.list(queue="maintenance", state="dead")), list)
    assert client.jobs.retry_many(queue="maintenance", state="dead").count >= 0
    assert client.jobs.discard(ids=["01J00000000000000000000000"]).count == 0
    assert any(s.name == "queue-vacuum" for s in client.schedules.list())
    assert client.schedules.run("queue-vacuum").schedule == "queue-vacuum"


KEYS = ["ABCDE-FGHIJ-KLMNO-PQRST-UVWX1", "BCDEF-GHIJK-LMNOP-QRSTU-VWXY2"]


def test_pidms_against_the_pidkey_simulator(client):
    checked = client.pidms.check(KEYS + ["not a key"], wait=15)
    assert checked.accepted == 2 and checked.errors[0].line == 3
    assert {r.keyname_with_dash for r in checked.results} == set(KEYS)
    assert client.pidms.get_check(checked.job_id).job_id == checked.job_id
    products = {p.prd for p in client.pidms.products().products}
    assert products and all(r.prd in products for r in checked.results)
    one = checked.results[0]
    assert client.pidms.get_key(one.keyname).prd == one.prd
    found = list(client.pidms.search(product=one.prd[:6], page_size=1))
    assert one.keyname in [k.keyname for k in found]
    sync = client.pidms.sync()
    done = wait_until("the sync", lambda: (s := client.pidms.get_sync(sync.sync_id)).status == "completed" and s)
    assert done.keys_updated == 2
    assert sync.sync_id in [s.id for s in client.pidms.syncs()]
    assert one.keyname in client.pidms.export_csv()


def test_sikka_against_the_sikka_simulator(client):
    client.sikka.refresh_practices()
    practices = wait_until("the practices", lambda: client.sikka.practices())
    assert {p.office_id for p in practices} >= {"D1001"}
    tenant = client.tenants.create(name=unique("practice-owner-"))
    d1001 = next(p for p in practices if p.office_id == "D1001")
    assert client.sikka.update_practice(d1001.id, tenant_id=tenant.id).tenant_id == tenant.id
    assert client.sikka.update_practice(d1001.id, tenant_id=None).tenant_id is None
    wb = client.sikka.create_writeback(office_id="D1001", operation="book_appointment", body={
        "patient_id": "1042", "date": "2026-12-01", "time": "09:30", "length": 30,
        "provider_id": "DOC1", "operatory": "OP2"})
    assert wb.status == "queued"
    done = wait_until("the writeback", lambda: (w := client.sikka.get_writeback(wb.id)).status == "completed" and w)
    assert done.sikka_id
    assert wb.id in [w.id for w in client.sikka.writebacks(status="completed")]


def test_each_error_class_from_a_real_answer(server, client):
    with pytest.raises(AuthenticationError) as e:
        Switchyard(api_key="sy_test_" + "x" * 38, base_url=server.base_url).whoami()
    assert e.value.status == 401 and e.value.request_id and e.value.title
    reader = client.api_keys.create(name="reader", scopes=["webhooks:read"])
    with pytest.raises(PermissionDeniedError) as e:
        Switchyard(api_key=reader.key, base_url=server.base_url).webhooks.create(
            url="http://127.0.0.1:9/x", event_types=["a.*"])
    assert e.value.status == 403 and "webhooks:write" in e.value.detail
    with pytest.raises(NotFoundError):
        client.webhooks.get("ep_nope")
    with pytest.raises(ValidationError) as e:
        client.webhooks.create(url="not a url", event_types=["a.*"])
    assert e.value.errors and e.value.errors[0]["field"] == "url"
    limited = client.api_keys.create(name="limited", scopes=["usage:read"], rate_limits={"per_minute": 1})
    once = Switchyard(api_key=limited.key, base_url=server.base_url, max_retries=0)
    once.whoami()
    with pytest.raises(RateLimitError) as e:
        once.whoami()
    assert e.value.retry_after and 0 < e.value.retry_after <= 60
    with pytest.raises(APIConnectionError):
        Switchyard(api_key=server.admin_key, base_url=f"http://127.0.0.1:{free_port()}", max_retries=1).whoami()


def test_a_rate_limited_call_waits_out_retry_after(server, client):
    limited = client.api_keys.create(name="slow", scopes=["usage:read"], rate_limits={"per_minute": 1})
    patient = Switchyard(api_key=limited.key, base_url=server.base_url, max_retries=2, timeout=10)
    patient.whoami()
    started = time.time()
    assert patient.whoami().key_id == limited.id  # waited for the next minute's request
    assert time.time() - started >= 1


class StoreLock:
    """A second process's exclusive lock on dev's SQLite store: the API's writes wait out
    SQLite's busy timeout (5 s) and answer a real 503 with Retry-After."""

    def __init__(self, server) -> None:
        self.db = sqlite3.connect(server.data / "switchyard.db", isolation_level=None, timeout=30)
        self.log = server.log

    def __enter__(self) -> "StoreLock":
        self.db.execute("BEGIN EXCLUSIVE")
        return self

    def release(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def __exit__(self, *exc) -> None:
        self.release()
        self.db.close()

    def unavailable_answers(self) -> int:
        return self.log.read_text().count("store unavailable")


def test_server_errors_from_a_real_503_raised_or_retried(server, client):
    once = Switchyard(api_key=server.admin_key, base_url=server.base_url, max_retries=0)
    with StoreLock(server):
        with pytest.raises(ServerError) as e:
            once.tenants.create(name=unique("locked-"))
    assert e.value.status == 503 and e.value.request_id and e.value.title
    # With retries: the call is answered 503 once, waits out Retry-After and succeeds when
    # the lock is gone, writing the tenant once.
    name = unique("retried-")
    patient = Switchyard(api_key=server.admin_key, base_url=server.base_url, max_retries=3)
    result = {}
    with StoreLock(server) as lock:
        before = lock.unavailable_answers()
        caller = threading.Thread(target=lambda: result.update(t=patient.tenants.create(name=name)))
        caller.start()
        deadline = time.time() + 30
        while lock.unavailable_answers() == before:
            assert time.time() < deadline, "the API answered 503 while the store was locked"
            time.sleep(0.05)
        lock.release()
        caller.join(timeout=30)
    assert result["t"].name == name
    assert [t.id for t in client.tenants.list() if t.name == name] == [result["t"].id]


class DroppingProxy:
    """Forwards to Switchyard; the first connection's answer is read and thrown away (the
    connection closed instead), as if the network broke after the server wrote."""

    def __init__(self, target_port: int) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.target = target_port
        self.dropped = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.pipe, args=(conn,), daemon=True).start()

    def pipe(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target))
        drop = self.dropped == 0
        self.dropped += 1
        conn.settimeout(5)
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(65536)
        head, _, body = request.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            body += conn.recv(65536)
        upstream.sendall(head + b"\r\n\r\n" + body)
        answer = upstream.recv(65536)
        if drop:
            conn.close()  # the server wrote; the client never hears of it
        else:
            conn.sendall(answer)
            conn.close()
        upstream.close()


def test_an_idempotent_retry_after_a_dropped_connection_writes_once(server, client):
    port = int(server.base_url.rsplit(":", 1)[1])
    proxy = DroppingProxy(port)
    through = Switchyard(api_key=server.admin_key, base_url=f"http://127.0.0.1:{proxy.port}", max_retries=2)
    kind = unique("sdk.idem")
    answer = through.events.publish(kind, {"once": True})
    assert proxy.dropped >= 2, "the first answer was dropped and the call retried"
    seen = [e.id for e in client.events.list(type=kind)]
    assert seen == [answer.id], "the server wrote the event once"


def test_lists_cover_every_page(client):
    prefix = unique("page-")
    made = {client.tenants.create(name=f"{prefix}{i}").id for i in range(7)}
    listed = {t.id for t in client.tenants.list(page_size=3) if t.name.startswith(prefix)}
    assert listed == made  # three pages of offset paging
    kind = unique("sdk.cursor")
    published = [client.events.publish(kind, {"i": i}).id for i in range(5)]
    assert [e.id for e in client.events.list(type=kind, limit=2)] == list(reversed(published))


def test_verify_webhook_real_tampered_and_rotated(client, receiver):
    ep = client.webhooks.create(url=receiver.url, event_types=["verify.*"])
    client.events.publish("verify.me", {"ok": True})
    body, headers = receiver.wait(1)[0]
    assert verify_webhook(body, headers, ep.secret)["data"] == {"ok": True}
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body.replace(b"true", b"false"), headers, ep.secret)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, ep.secret, now=time.time() + 3600)
    new = client.webhooks.rotate_secret(ep.id)
    client.events.publish("verify.rotated", {"ok": 2})
    body, headers = receiver.wait(2)[1]
    assert len(headers["webhook-signature"].split()) == 2, "old and new secret both sign"
    assert verify_webhook(body, headers, ep.secret)["data"] == {"ok": 2}
    assert verify_webhook(body, headers, new.secret)["data"] == {"ok": 2}
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, "whsec_" + "A" * 43 + "=")


def test_the_async_client(server):
    async def run() -> None:
        async with AsyncSwitchyard(api_key=server.admin_key, base_url=server.base_url) as c:
            me = await c.whoami()
            assert "admin" in me.scopes
            t = await c.tenants.create(name=unique("async-"))
            ids = [x.id async for x in c.tenants.list(page_size=2)]
            assert t.id in ids
            with pytest.raises(NotFoundError):
                await c.webhooks.get("ep_nope")
    asyncio.run(run())
