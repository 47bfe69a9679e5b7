"""An alert's context for the people it pages: runbook, description, the source's link, links, images, details.

Alertmanager sends it as annotations (`runbook_url`, `description`) and `generatorURL`; PagerDuty as
`custom_details` (kept as annotations), `client_url`, `links` and `images`. The API returns the stored values
whole (bounded at the door by vigil/ingest/fit.py); pages, the Jira issue and the Temporal UI show them cut to
the limits below, which docs/configuration.md documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from vigil.contracts import STATE_KEY_CHARS, AlertLink, alert_key
from vigil.models import AlertRow

RUNBOOK_KEYS = ("runbook_url", "runbook")
DESCRIPTION_KEYS = ("description",)
# The summary is the alert's own line already; the rest of the annotations are its details.
NOT_DETAILS = frozenset(("summary", *RUNBOOK_KEYS, *DESCRIPTION_KEYS))
# What a page, the Jira issue and the Temporal UI show of one alert.
SHOWN_DESCRIPTION_CHARS = 800
SHOWN_DETAIL_CHARS = 500
SHOWN_DETAILS = 10
SHOWN_LINKS = 10
# Only these open as links; anything else (javascript:, data:, a relative path) is shown as text.
LINK_SCHEMES = ("http", "https")


class StoredAlert(Protocol):
    fingerprint: str
    annotations: dict[str, str]
    url: str | None
    links: list[dict[str, str]] | list[AlertLink] | None


class AlertContext(BaseModel):
    """What a responder needs beside the summary to start on one alert."""

    key: str = Field(description="The alert as the workflow names it: its fingerprint, or a hash of a long one.")
    runbook_url: str | None = None
    description: str | None = None
    source_url: str | None = Field(default=None, description="The source's link: generatorURL or client_url.")
    links: list[AlertLink] = Field(default_factory=list, description="The source's links, the runbook first.")
    images: list[AlertLink] = Field(default_factory=list)
    details: dict[str, str] = Field(default_factory=dict, description="custom_details / other annotations.")

    @property
    def empty(self) -> bool:
        return not (self.runbook_url or self.description or self.source_url or self.links or self.images or self.details)

    def shown_links(self, max_href: int | None = None) -> list[tuple[str, str]]:
        """(text, href) of every link a page shows, runbook first; hrefs that are not http(s) are left out, and
        so are those longer than `max_href` (a plain-text email keeps each URL whole on one line)."""
        out = [("Runbook", self.runbook_url)] if self.runbook_url else []
        out += [(link.text or link.href, link.href) for link in self.links]
        out += [(name, url.strip()) for name, url in sorted(self.details.items()) if _is_url(url)]  # e.g. `dashboard`
        if self.source_url:
            out.append(("Source", self.source_url))
        fit = [(t, h) for t, h in out if openable(h) and (max_href is None or len(h) <= max_href)]  # type: ignore[arg-type]
        return [(shown(text, 200), href) for text, href in fit][:SHOWN_LINKS]

    def shown_images(self) -> list[tuple[str, str]]:
        """(alt, href) of the images, as links (mail clients block remote images): the image's own link, else its src."""
        pairs = [(x.text or "image", x.href if openable(x.href) else x.image or "") for x in self.images]
        return [(shown(alt, 200), href) for alt, href in pairs if openable(href)][:SHOWN_LINKS]

    def shown_details(self) -> list[tuple[str, str]]:
        """(name, value) pairs cut to what a page shows, in name order."""
        text = [(k, v) for k, v in sorted(self.details.items()) if not _is_url(v)]  # URLs are among the links
        return [(k, shown(v, SHOWN_DETAIL_CHARS)) for k, v in text[:SHOWN_DETAILS]]

    def shown_description(self) -> str | None:
        return shown(self.description, SHOWN_DESCRIPTION_CHARS) if self.description else None


def openable(href: str | None) -> bool:
    """A link a mail client or browser may open: http or https with a host."""
    if not href:
        return False
    parts = urlsplit(href)
    return parts.scheme.lower() in LINK_SCHEMES and bool(parts.netloc)


def _is_url(value: str) -> bool:
    return openable(value.strip()) and not any(c.isspace() for c in value.strip())


def shown(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _first(annotations: dict[str, str], keys: Sequence[str]) -> str | None:
    return next((annotations[k].strip() for k in keys if annotations.get(k, "").strip()), None)


def context_of(alert: StoredAlert) -> AlertContext:
    """The context of a stored alert (or a held one, or an `Alert`); a PagerDuty link called "runbook" is
    the runbook when no annotation names one."""
    annotations = alert.annotations or {}
    links = [x if isinstance(x, AlertLink) else AlertLink.model_validate(x) for x in alert.links or []]
    plain = [x for x in links if x.image is None]
    runbook = _first(annotations, RUNBOOK_KEYS)
    if runbook is None:
        named = next((x for x in plain if "runbook" in f"{x.text} {x.href}".lower()), None)
        if named is not None:
            runbook = named.href
            plain.remove(named)
    return AlertContext(
        key=alert_key(alert.fingerprint), runbook_url=runbook, description=_first(annotations, DESCRIPTION_KEYS),
        source_url=alert.url, links=plain, images=[x for x in links if x.image is not None],
        details={k: v for k, v in annotations.items() if k not in NOT_DETAILS},
    )


def load_contexts(session: Session, *, number: int, keys: Iterable[str]) -> dict[str, AlertContext]:
    """The context of the incident's alerts named by workflow keys (a digest), read from the database.

    Pages read it here rather than carrying it through workflow history: 20 alerts with 16 KiB of details
    each would put 320 KiB into every page's activity input.
    """
    wanted = set(keys)
    if not wanted:
        return {}
    plain = [k for k in wanted if not k.startswith("#")]
    query = select(AlertRow).where(AlertRow.incident_number == number)
    if len(plain) == len(wanted):
        query = query.where(AlertRow.fingerprint.in_(plain))
    else:  # a hashed key names a fingerprint longer than STATE_KEY_CHARS
        query = query.where(or_(AlertRow.fingerprint.in_(plain), func.length(AlertRow.fingerprint) > STATE_KEY_CHARS))
    found: dict[str, AlertContext] = {}
    for row in session.scalars(query):
        context = context_of(row)
        if context.key in wanted:
            found[context.key] = context
    return found
