"""SMS/IVR provider adapters, outgoing webhooks, request signing and acknowledge-link tokens.

Library code only: blocking, thread-safe per call, usable from sync Temporal activities.
"""

from __future__ import annotations

from collections.abc import Sequence

from vigil.providers.base import (
    DeliveryError,
    OutboundMessage,
    PermanentDeliveryError,
    PhoneProvider,
    SendResult,
    TransientDeliveryError,
)
from vigil.providers.console import ConsoleProvider
from vigil.providers.http import HttpPhoneProvider
from vigil.settings import ProviderSettings, Settings
from vigil.urls import Network

__all__ = [
    "ConsoleProvider",
    "DeliveryError",
    "HttpPhoneProvider",
    "OutboundMessage",
    "PermanentDeliveryError",
    "PhoneProvider",
    "SendResult",
    "TransientDeliveryError",
    "build_phone_providers",
]


def build_phone_providers(
    settings: Settings | ProviderSettings, allowlist: Sequence[Network] | None = None
) -> dict[str, PhoneProvider]:
    """{"sms": ..., "ivr": ...}: the HTTP adapter for a channel with a URL, the console adapter otherwise.

    `allowlist`: the private networks the middleware may be on; default VIGIL_PRIVATE_URL_ALLOWLIST."""
    s = settings.providers if isinstance(settings, Settings) else settings
    if allowlist is None:
        allowlist = settings.core.private_url_allowlist if isinstance(settings, Settings) else ()
    providers: dict[str, PhoneProvider] = {}
    for channel, url in (("sms", s.sms_url), ("ivr", s.ivr_url)):
        if url is None:
            providers[channel] = ConsoleProvider(channel)
            continue
        assert s.secret is not None  # ProviderSettings refuses a URL without a secret
        providers[channel] = HttpPhoneProvider(
            name=s.name, channel=channel, url=url, secret=s.secret.get_secret_value().encode(),
            connect_timeout_seconds=s.connect_timeout_seconds, read_timeout_seconds=s.read_timeout_seconds,
            allowlist=allowlist,
        )
    return providers
