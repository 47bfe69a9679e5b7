"""Signed JSON POSTs and how their outcome maps to permanent or transient delivery errors.

No retry loop here: a transient error leaves the activity, and Temporal's retry policy backs off and
retries it with the same idempotency key, durably, across worker restarts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version

import httpx

from vigil.providers.base import PermanentDeliveryError, TransientDeliveryError
from vigil.providers.signing import signed_headers
from vigil.urls import Network, UnresolvableUrl, UnsafeUrl, check_url

RETRYABLE_STATUS = frozenset({408, 429})
ERROR_EXCERPT = 200  # characters of a middleware's JSON `error` kept in the notification log


def _user_agent() -> str:
    try:
        return f"vigil/{version('vigil')}"
    except PackageNotFoundError:
        return "vigil/dev"


USER_AGENT = _user_agent()


def new_client(
    connect_timeout_seconds: float, read_timeout_seconds: float, *, allowlist: Sequence[Network] = ()
) -> httpx.Client:
    """One client per adapter: pooled connections, no redirects (a redirect is a misconfigured URL), and every
    request's host checked against non-public addresses first (vigil.urls; `allowlist` networks excepted)."""
    timeout = httpx.Timeout(
        connect=connect_timeout_seconds, read=read_timeout_seconds, write=read_timeout_seconds,
        pool=connect_timeout_seconds,
    )
    return httpx.Client(
        timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT},
        event_hooks={"request": [_public_only(tuple(allowlist))]},
    )


def _public_only(allowlist: tuple[Network, ...]) -> Callable[[httpx.Request], None]:
    def check(request: httpx.Request) -> None:
        try:
            check_url(str(request.url), allowlist)
        except UnsafeUrl as err:
            raise PermanentDeliveryError(f"refused to send: {err}") from err
        except UnresolvableUrl as err:
            raise TransientDeliveryError(str(err)) from err

    return check


def encode(payload: dict) -> bytes:
    """The exact bytes that are sent and signed."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def post(
    client: httpx.Client,
    url: str,
    body: bytes,
    *,
    idempotency_key: str,
    secret: bytes | None,
    clock: Callable[[], float] = time.time,
    error_field: bool = False,
) -> httpx.Response:
    """POST `body`; return a 2xx response, or raise Permanent/TransientDeliveryError (see raise_for_status)."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
    if secret is not None:
        headers |= signed_headers(secret, int(clock()), body)
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.TimeoutException as err:
        raise TransientDeliveryError(f"timeout: {type(err).__name__}: {err}") from err
    except httpx.RequestError as err:  # connection refused/reset, DNS, TLS, protocol errors
        raise TransientDeliveryError(f"connection error: {type(err).__name__}: {err}") from err
    raise_for_status(response, error_field=error_field)
    return response


def raise_for_status(response: httpx.Response, *, error_field: bool = False) -> None:
    """2xx passes; 408, 429 and 5xx are transient; every other status is permanent.

    The raw body is never kept: errors reach the notification log, which viewers read, and a receiver's error
    page can hold anything (an internal service once answered with its configuration). With `error_field`, the
    `error` string of a JSON body (the middleware contract, docs/providers.md) is kept, sanitised and bounded."""
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = f"HTTP {status} {response.reason_phrase}".rstrip()
    reason = _error_field(response) if error_field else None
    if reason:
        detail = f"{detail}: {reason}"
    if status in RETRYABLE_STATUS or status >= 500:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        raise TransientDeliveryError(
            detail if retry_after is None else f"{detail} (Retry-After {retry_after:g}s)",
            retry_after_seconds=retry_after,
        )
    raise PermanentDeliveryError(detail)


def _error_field(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    value = data.get("error") if isinstance(data, dict) else None
    if not isinstance(value, str):
        return None
    printable = "".join(c if c.isprintable() else " " for c in value).strip()
    return printable[:ERROR_EXCERPT] or None


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds, from delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
