"""A real SMS/IVR middleware and webhook receiver on 127.0.0.1, scriptable per test.

It checks requests the way docs/providers.md tells operators to (its own HMAC code, not Vigil's), honours
`Idempotency-Key` (a repeated key answers the first message id and sends nothing), and records everything.

    provider.url("sms")                      # POST here: the phone middleware
    provider.hook_url("ops")                 # POST here: an outgoing-webhook receiver
    provider.fail_next(2, 500)               # the next two requests get 500 (429 + retry_after=..., 400, ...)
    provider.latency = 1.5                   # answer every request this much later
    provider.hold(); ...; provider.release() # hold sends mid-flight (already sent, answer withheld)
    provider.key_counts()["INC-1/..."]       # requests that reached it with that key
    provider.sends_by_key()                  # messages actually "sent", per key (1 with idempotency)
    await provider.callback(url, {...})      # a signed provider -> Vigil callback
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from pydantic import SecretStr

from vigil.settings import ProviderSettings

DEFAULT_SECRET = b"provider-test-secret"
TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class Received:
    """One request as it arrived, and the status it was answered with."""

    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass(frozen=True)
class Sent:
    """A message the middleware actually placed (once per idempotency key)."""

    key: str
    channel: str
    to: str
    text: str
    message_id: str
    body: dict[str, Any]


@dataclass
class _Failure:
    status: int
    retry_after: str | None
    body: str
    path: str | None


@dataclass
class _State:
    requests: list[Received] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    ids_by_key: dict[str, str] = field(default_factory=dict)
    key_counts: Counter[str] = field(default_factory=Counter)
    hooks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failures: list[_Failure] = field(default_factory=list)
    in_flight: int = 0


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """What an operator's middleware computes (the docs' recipe)."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_ok(secret: bytes, headers: dict[str, str], body: bytes) -> bool:
    timestamp = headers.get("x-vigil-timestamp", "")
    given = headers.get("x-vigil-signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body).encode(), given.encode())


class ProviderServer:
    """The middleware: `/sms`, `/ivr` (any `/<channel>`) and `/hooks/<name>` on a free 127.0.0.1 port."""

    def __init__(self, secret: bytes = DEFAULT_SECRET) -> None:
        self.secret = secret
        self.latency = 0.0
        self.omit_message_id = False
        self._lock = threading.Lock()
        self._state = _State()
        self._hook_secrets: dict[str, bytes | None] = {}
        self._gate = threading.Event()
        self._gate.set()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._httpd = _Httpd(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None
        self.port: int = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> ProviderServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="provider-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting (new connections are refused from here on) and free every held request."""
        self._stopping.set()
        self._gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses ------------------------------------------------------------------------

    def url(self, channel: str) -> str:
        return f"{self.base_url}/{channel}"

    def hook_url(self, name: str) -> str:
        return f"{self.base_url}/hooks/{name}"

    def provider_settings(self, **overrides: Any) -> ProviderSettings:
        """Vigil's ProviderSettings pointing at this server, with its secret."""
        values: dict[str, Any] = {
            "sms_url": self.url("sms"), "ivr_url": self.url("ivr"), "secret": SecretStr(self.secret.decode()),
        }
        return ProviderSettings(**(values | overrides))

    # --- scripting ------------------------------------------------------------------------

    def fail_next(
        self, n: int = 1, status: int = 500, *, retry_after: int | str | None = None, body: str = "scripted failure",
        path: str | None = None,
    ) -> None:
        """Answer the next `n` authenticated requests (to `path` only, if given) with `status`, sending nothing."""
        failure = _Failure(status, None if retry_after is None else str(retry_after), body, path)
        with self._lock:
            self._state.failures.extend([failure] * n)

    def set_hook_secret(self, name: str, secret: bytes | None) -> None:
        """Require a valid signature on `/hooks/<name>` (None: accept unsigned, as Slack does)."""
        with self._lock:
            self._hook_secrets[name] = secret

    def hold(self) -> None:
        """From now on each send is recorded as sent, then its answer is withheld until `release()`."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def reset(self) -> None:
        """Forget records and scripted behaviour (the message ids keep counting up)."""
        with self._lock:
            self._state = _State()
            self._hook_secrets.clear()
        self.latency = 0.0
        self.omit_message_id = False
        self._gate.set()

    # --- records --------------------------------------------------------------------------

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._state.requests)

    @property
    def sent(self) -> list[Sent]:
        with self._lock:
            return list(self._state.sent)

    @property
    def in_flight(self) -> int:
        """Requests being held by `hold()` right now."""
        with self._lock:
            return self._state.in_flight

    def key_counts(self) -> Counter[str]:
        """Authenticated phone requests per Idempotency-Key, replays and scripted failures included."""
        with self._lock:
            return Counter(self._state.key_counts)

    def sends_by_key(self) -> Counter[str]:
        """Messages actually placed, per key: 1 each, however often Vigil retried."""
        with self._lock:
            return Counter(s.key for s in self._state.sent)

    def hooks(self, name: str) -> list[dict[str, Any]]:
        """Bodies accepted on `/hooks/<name>`."""
        with self._lock:
            return list(self._state.hooks.get(name, []))

    # --- provider -> Vigil callbacks ------------------------------------------------------

    def signed(self, payload: dict[str, Any], *, secret: bytes | None = None, timestamp: int | None = None
               ) -> tuple[bytes, dict[str, str]]:
        """A callback body and its headers, signed like a middleware signs them."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        ts = str(int(time.time()) if timestamp is None else timestamp)
        return body, {
            "Content-Type": "application/json",
            "X-Vigil-Timestamp": ts,
            "X-Vigil-Signature": signature(self.secret if secret is None else secret, ts, body),
        }

    async def callback(
        self, url: str, payload: dict[str, Any], *, client: httpx.AsyncClient | None = None,
        secret: bytes | None = None, timestamp: int | None = None,
    ) -> httpx.Response:
        """POST a signed callback; pass `client` to go through the ASGI test client instead of TCP."""
        body, headers = self.signed(payload, secret=secret, timestamp=timestamp)
        if client is not None:
            return await client.post(url, content=body, headers=headers)
        async with httpx.AsyncClient(timeout=30) as http:
            return await http.post(url, content=body, headers=headers)

    def callback_sync(
        self, url: str, payload: dict[str, Any], *, secret: bytes | None = None, timestamp: int | None = None,
    ) -> httpx.Response:
        body, headers = self.signed(payload, secret=secret, timestamp=timestamp)
        return httpx.post(url, content=body, headers=headers, timeout=30)

    # --- request handling (server threads) ------------------------------------------------

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/hooks/"):
            return self._hook(path.removeprefix("/hooks/"), path, headers, body)
        channel = path.strip("/")
        if not channel or "/" in channel:
            return 404, {}, b"not found"
        if not signature_ok(self.secret, headers, body):
            return 401, {}, b'{"error":"bad signature"}'
        key = headers.get("idempotency-key")
        if not key:
            return 400, {}, b'{"error":"Idempotency-Key required"}'
        with self._lock:
            self._state.key_counts[key] += 1
        failure = self._take_failure(path)
        if failure is not None:
            return failure
        try:
            message = json.loads(body)
        except ValueError:
            return 400, {}, b'{"error":"invalid JSON"}'
        if message.get("channel") != channel or message.get("idempotency_key") != key:
            return 400, {}, b'{"error":"channel or key does not match"}'
        with self._lock:
            message_id = self._state.ids_by_key.get(key)
            if message_id is None:
                message_id = self._state.ids_by_key[key] = f"msg-{next(self._ids)}"
                self._state.sent.append(
                    Sent(key, channel, str(message.get("to")), str(message.get("text")), message_id, message)
                )
        answer = {} if self.omit_message_id else {"message_id": message_id}
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()

    def _hook(self, name: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            secret = self._hook_secrets.get(name)
        if secret is not None and not signature_ok(secret, headers, body):
            return 401, {}, b"invalid signature"
        failure = self._take_failure(path)
        if failure is not None:
            return failure
        try:
            document = json.loads(body)
        except ValueError:
            return 400, {}, b"invalid_payload"
        with self._lock:
            self._state.hooks.setdefault(name, []).append(document)
        return 200, {"Content-Type": "text/plain"}, b"ok"  # what Slack answers

    def _take_failure(self, path: str) -> tuple[int, dict[str, str], bytes] | None:
        with self._lock:
            for i, failure in enumerate(self._state.failures):
                if failure.path is None or failure.path == path:
                    del self._state.failures[i]
                    break
            else:
                return None
        headers = {"Retry-After": failure.retry_after} if failure.retry_after is not None else {}
        return failure.status, headers, failure.body.encode()

    def _delay_and_hold(self) -> None:
        if self.latency:
            self._stopping.wait(self.latency)  # simulated provider latency; stop() cuts it short
        if not self._gate.is_set():
            with self._lock:
                self._state.in_flight += 1
            try:
                self._gate.wait()
            finally:
                with self._lock:
                    self._state.in_flight -= 1

    def _record(self, path: str, headers: dict[str, str], body: bytes, status: int) -> None:
        with self._lock:
            self._state.requests.append(Received(path, headers, body, status))


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    owner: ProviderServer

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that timed out has gone away before the (deliberately late) answer; that is the test.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    server: _Httpd

    def do_POST(self) -> None:  # noqa: N802
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, extra, answer = owner._handle(self.path, headers, body)
        owner._record(self.path, headers, body, status)
        if status == 200:
            owner._delay_and_hold()  # after the send is recorded: the answer is what gets lost
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: the test asserts on the records instead."""
