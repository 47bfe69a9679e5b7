"""Fit an accepted alert to what Temporal and the database take: bounded sizes, clean Unicode, aware times.

Vigil stores what does not fit in a form that fits rather than refusing it. A refused alert is a lost page:
Alertmanager and PagerDuty clients do not retry a 4xx. Long values keep a stable hash suffix, so two
different over-long values never become one (no false grouping or dedup), and the same value always fits to
the same text (repeats still dedup).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from vigil.contracts import Alert, AlertLink

# Database columns (vigil/models.py) and Temporal's limits: a keyword search attribute takes 2,048 bytes
# (GroupKey, Service), one payload 2 MiB. Chunks of alerts sent to a workflow stay far below that.
MAX_FINGERPRINT = 255
MAX_SERVICE = 200
# 480 characters: the column takes 512, and even 4-byte characters stay under the search attribute's 2,048 bytes.
MAX_GROUP_KEY = 480
MAX_SUMMARY = 1024
MAX_SOURCE = 255
MAX_URL = 2048
MAX_SEVERITY_NAME = 64
MAX_LABEL_NAME = 128
MAX_LABEL_VALUE = 1024
MAX_ANNOTATION_VALUE = 4096
MAX_LABELS_CHARS = 8 * 1024  # all names and values of one alert's labels
MAX_ANNOTATIONS_CHARS = 16 * 1024
# PagerDuty's links and images of one alert: the first MAX_LINKS are kept, each href and src within MAX_URL.
MAX_LINKS = 20
MAX_LINK_TEXT = 256
# One workflow message carries at most this many characters of alerts. Even if every character took 6 bytes
# in JSON (a control character escaped as \u0001), a chunk stays under Temporal's 2 MiB payload limit.
MAX_CHUNK_CHARS = 256 * 1024
TRUNCATED_ANNOTATION = "vigil_truncated"

HASH_CHARS = 12
# Lone UTF-16 surrogates (JSON lets "\ud800" through) cannot be encoded as UTF-8, and PostgreSQL refuses NUL.
_UNENCODABLE = re.compile("[\x00\ud800-\udfff]")


def clean(text: str) -> str:
    """Replace what UTF-8 or PostgreSQL cannot store with U+FFFD."""
    return _UNENCODABLE.sub("\ufffd", text) if _UNENCODABLE.search(text) else text


def clean_tree(value: object) -> object:
    """`clean` every string of a parsed JSON document, keys included."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean_tree(k): clean_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_tree(v) for v in value]
    return value


def bounded(text: str, limit: int) -> str:
    """`text` if it fits, else its head and a stable hash of the whole: `head…#3f2a9c01b7de`."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    return f"{text[: limit - HASH_CHARS - 2]}…#{digest}"


def as_utc(value: datetime | None) -> datetime | None:
    """A time without a zone is read as UTC (README, "What senders may post"); an aware one is kept as it is."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _text(value: str, limit: int) -> str:
    return bounded(clean(value), limit)


def _mapping(values: dict[str, str], *, value_limit: int, total_limit: int) -> tuple[dict[str, str], int]:
    """Clean and bound every entry; entries past the total budget are dropped (sorted by name: stable)."""
    out: dict[str, str] = {}
    used = dropped = 0
    for name in sorted(values):
        key, value = _text(name, MAX_LABEL_NAME), _text(values[name], value_limit)
        if used + len(key) + len(value) > total_limit:
            dropped += 1
            continue
        out[key] = value
        used += len(key) + len(value)
    return out, dropped


def _over(values: dict[str, str], value_limit: int, total_limit: int) -> bool:
    total = 0
    for k, v in values.items():
        if len(k) > MAX_LABEL_NAME or len(v) > value_limit:
            return True
        total += len(k) + len(v)
    return total > total_limit


def _needs_fitting(alert: Alert) -> bool:
    """The hot path: a storm's alerts are short and clean, and a quick scan says so."""
    url, raw = alert.url or "", alert.raw_severity or ""
    if (
        len(alert.fingerprint) > MAX_FINGERPRINT or len(alert.summary) > MAX_SUMMARY
        or len(alert.service) > MAX_SERVICE or len(alert.source) > MAX_SOURCE or len(url) > MAX_URL
        or len(raw) > MAX_SEVERITY_NAME
        or _over(alert.labels, MAX_LABEL_VALUE, MAX_LABELS_CHARS)
        or _over(alert.annotations, MAX_ANNOTATION_VALUE, MAX_ANNOTATIONS_CHARS)
        or len(alert.links) > MAX_LINKS
        or any(len(x.href) > MAX_URL or len(x.text) > MAX_LINK_TEXT or len(x.image or "") > MAX_URL for x in alert.links)
    ):
        return True
    joined = "".join((
        alert.fingerprint, alert.summary, alert.service, alert.source, url, raw,
        *alert.labels.keys(), *alert.labels.values(), *alert.annotations.keys(), *alert.annotations.values(),
        *(x.href + x.text + (x.image or "") for x in alert.links),
    ))
    return _UNENCODABLE.search(joined) is not None


def fit_alert(alert: Alert, *, keep_fingerprint: bool = False) -> Alert:
    """The alert in a form the database and Temporal accept; the same alert if it already fits.

    `keep_fingerprint` for an alert read back from the outbox: its stored fingerprint is its row's identity.
    """
    times = {"starts_at": as_utc(alert.starts_at), "ends_at": as_utc(alert.ends_at)}
    if not _needs_fitting(alert):
        if times["starts_at"] is alert.starts_at and times["ends_at"] is alert.ends_at:
            return alert
        return alert.model_copy(update=times)
    labels, dropped_labels = _mapping(alert.labels, value_limit=MAX_LABEL_VALUE, total_limit=MAX_LABELS_CHARS)
    annotations, dropped_annotations = _mapping(
        alert.annotations, value_limit=MAX_ANNOTATION_VALUE, total_limit=MAX_ANNOTATIONS_CHARS
    )
    dropped_links = max(0, len(alert.links) - MAX_LINKS)
    if dropped_labels or dropped_annotations or dropped_links:
        annotations[TRUNCATED_ANNOTATION] = (
            f"{dropped_labels} label(s) and {dropped_annotations} annotation(s) dropped: over Vigil's size limits"
            + (f"; {dropped_links} link(s) and image(s) past the first {MAX_LINKS} dropped" if dropped_links else "")
        )
    return alert.model_copy(
        update={
            **times,
            "fingerprint": alert.fingerprint if keep_fingerprint else _text(alert.fingerprint, MAX_FINGERPRINT),
            "summary": _text(alert.summary, MAX_SUMMARY) or "(no summary)",
            "service": _text(alert.service, MAX_SERVICE) or "unknown",
            "source": _text(alert.source, MAX_SOURCE),
            "url": _text(alert.url, MAX_URL) if alert.url else alert.url,
            "raw_severity": _text(alert.raw_severity, MAX_SEVERITY_NAME) if alert.raw_severity else alert.raw_severity,
            "labels": labels,
            "annotations": annotations,
            "links": [_link(x) for x in alert.links[:MAX_LINKS]],
        }
    )


def _link(link: AlertLink) -> AlertLink:
    return AlertLink(
        href=_text(link.href, MAX_URL), text=_text(link.text, MAX_LINK_TEXT),
        image=_text(link.image, MAX_URL) if link.image else link.image,
    )


def fit_fingerprint(fingerprint: str) -> str:
    """A dedup key as it was stored, for lookups by a sender's key."""
    return _text(fingerprint, MAX_FINGERPRINT)


def fit_group_key(key: str) -> str:
    """A group key (label values joined) within its column and search attribute; labels are already clean."""
    return bounded(key, MAX_GROUP_KEY)


def size(alert: Alert) -> int:
    """Characters of text an alert carries: what MAX_CHUNK_CHARS counts."""
    return (
        len(alert.fingerprint) + len(alert.summary) + len(alert.service) + len(alert.source) + len(alert.url or "")
        + sum(len(k) + len(v) for k, v in alert.labels.items())
        + sum(len(k) + len(v) for k, v in alert.annotations.items())
        + sum(len(x.href) + len(x.text) + len(x.image or "") + 64 for x in alert.links)
        + 256  # fixed fields and JSON punctuation
    )


def chunks(alerts: list[Alert]) -> list[list[Alert]]:
    """Split a batch so no workflow message exceeds MAX_CHUNK_CHARS (one fitted alert always fits)."""
    out: list[list[Alert]] = [[]]
    used = 0
    for alert in alerts:
        n = size(alert)
        if out[-1] and used + n > MAX_CHUNK_CHARS:
            out.append([])
            used = 0
        out[-1].append(alert)
        used += n
    return out
