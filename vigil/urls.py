"""Outgoing URLs (webhooks, SMS/IVR middleware) must not reach Vigil's own network: no SSRF.

A URL whose host is, or resolves to, an address that is not globally routable (loopback, link-local such as
169.254.169.254, private, shared, reserved) or multicast is refused unless an allow-list network contains it.
Checked when an admin sets the URL and again before every request, since DNS answers change.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class UnsafeUrl(ValueError):
    """The URL points at an address outside the public internet (or is not http/https)."""


class UnresolvableUrl(ValueError):
    """The URL's host does not resolve now (the URL may still be fine later)."""


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the system resolver, as the HTTP client will use)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise UnresolvableUrl(f"{host} does not resolve: {err}") from err
    return [str(info[4][0]) for info in infos]


def _forbidden(address: Address, allowlist: Sequence[Network]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in net for net in allowlist):
        return False
    return not address.is_global or address.is_multicast


def check_url(url: str, allowlist: Sequence[Network], *, resolver: Resolver = resolve) -> None:
    """UnsafeUrl if `url` may reach a non-public address; UnresolvableUrl if its host does not resolve now."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("must be an http:// or https:// URL with a host")
    host = parts.hostname
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        # The scope of a link-local IPv6 answer (`fe80::1%eth0`) is not part of the address.
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolver(host, port)]
    bad = sorted({str(a) for a in addresses if _forbidden(a, allowlist)})
    if bad:
        raise UnsafeUrl(
            f"{host} resolves to {', '.join(bad)}, which is loopback, link-local, private or reserved; "
            "add its network to VIGIL_PRIVATE_URL_ALLOWLIST to allow it"
        )


def mask_url(url: str) -> str:
    """`https://hooks.slack.com/…`: scheme and host only. Webhook URLs carry their secret in the path or query."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "…"
    return f"{parts.scheme}://{parts.hostname}/…"
