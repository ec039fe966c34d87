"""The suite runs against a real `switchyard dev` it starts: its own data directory, a free
port, the admin key `dev` writes. SWITCHYARD_BIN names the binary (default: the workspace's
debug build)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"{proc.args[1]} did not start:\n{log.read_text()}")
            time.sleep(0.1)


class Server:
    def __init__(self, base_url: str, admin_key: str, log: Path) -> None:
        self.base_url = base_url
        self.admin_key = admin_key
        self.log = log
        self.data = log.parent


@pytest.fixture(scope="session")
def server() -> Server:
    binary = os.environ.get("SWITCHYARD_BIN", str(ROOT / "target" / "debug" / "switchyard"))
    if not Path(binary).exists():
        pytest.fail(f"no switchyard binary at {binary}: build it (cargo build) or set SWITCHYARD_BIN")
    data = Path(tempfile.mkdtemp(prefix="switchyard-sdk-"))
    # The PIDKey and Sikka simulators (`switchyard sandbox`) on loopback, so the pidms and
    # sikka namespaces do real work.
    sandbox_port = free_port()
    sandbox_log = data / "sandbox.log"
    sandbox = subprocess.Popen(
        [binary, "sandbox", "--listen", f"127.0.0.1:{sandbox_port}", "--pidkey-latency-ms", "5",
         "--writeback-delay-ms", "200"],
        stdout=sandbox_log.open("w"), stderr=subprocess.STDOUT)
    wait_for_port(sandbox_port, sandbox, sandbox_log)
    simulators = f"http://127.0.0.1:{sandbox_port}"
    port = free_port()
    env = dict(os.environ)
    env.update({
        "SWITCHYARD_PIDKEY_BASE_URL": simulators,
        "PIDKEY_API_KEY": "sdk-test",
        "SWITCHYARD_SIKKA_BASE_URL": f"{simulators}/v4",
        "SIKKA_APP_ID": "sandbox-app-id",
        "SIKKA_APP_KEY": "sandbox-app-key",
        "SWITCHYARD_DATA_DIR": str(data),
        "SWITCHYARD_LISTEN": f"127.0.0.1:{port}",
        "SWITCHYARD_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        "SWITCHYARD_LOG_FORMAT": "json",
        "SWITCHYARD_WEBHOOK_RETRY_SCHEDULE": "200ms,400ms",
        "SWITCHYARD_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
        "SWITCHYARD_RATE_LIMIT_PER_MINUTE": "100000",
    })
    log = data / "dev.log"
    proc = subprocess.Popen([binary, "dev"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"switchyard dev did not start:\n{log.read_text()}")
            time.sleep(0.2)
    key = (data / "admin.key").read_text().strip()
    yield Server(base, key, log)
    for child in (proc, sandbox):
        child.terminate()
        child.wait(timeout=30)


class Receiver:
    """A webhook receiver on loopback that records what arrives."""

    def __init__(self) -> None:
        self.received: List[Tuple[bytes, Dict[str, str]]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.received.append((body, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def wait(self, n: int, within: float = 20.0) -> List[Tuple[bytes, Dict[str, str]]]:
        deadline = time.time() + within
        while len(self.received) < n:
            if time.time() > deadline:
                raise AssertionError(f"{len(self.received)} of {n} deliveries arrived")
            time.sleep(0.05)
        return self.received


@pytest.fixture
def receiver() -> Receiver:
    r = Receiver()
    yield r
    r.httpd.shutdown()


def spec(server: Server) -> dict:
    with urllib.request.urlopen(server.base_url + "/openapi.json") as resp:
        return json.load(resp)
