"""Turn Alertmanager and PagerDuty Events v2 payloads into Vigil alerts, severities and group keys."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime

from vigil.contracts import Alert, AlertLink, AlertStatus, Severity

SEVERITY_ALIASES: dict[str, Severity] = {
    **dict.fromkeys(["critical", "crit", "page", "p1", "fatal", "emergency", "disaster"], Severity.critical),
    **dict.fromkeys(["high", "error", "err", "major", "p2"], Severity.high),
    **dict.fromkeys(["warning", "warn", "minor", "medium", "p3", "average"], Severity.warning),
    **dict.fromkeys(["info", "informational", "low", "none", "p4", "p5", "debug"], Severity.info),
}
DEFAULT_SEVERITY = Severity.warning
DEFAULT_GROUP_BY = ("service", "alertname")
ZERO_TIME_PREFIX = "0001-01-01"
_FIRING_PREFIX = re.compile(r"^\[(FIRING|RESOLVED)(:\d+)?\]\s*", re.IGNORECASE)
_LABEL_LINE = re.compile(r"^\s*-\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def map_severity(raw: str | None) -> Severity:
    """Alertmanager `severity` label or PagerDuty severity -> critical|high|warning|info."""
    if not raw:
        return DEFAULT_SEVERITY
    return SEVERITY_ALIASES.get(raw.strip().lower(), DEFAULT_SEVERITY)


def group_key(alert: Alert, group_by: Sequence[str] = DEFAULT_GROUP_BY) -> str:
    """`service=checkout|alertname=HighErrorRate`: readable in the UI's GroupKey column."""
    values = {**alert.labels, "service": alert.service}  # the routed service wins over the raw label
    return "|".join(f"{label}={values.get(label, '')}" for label in group_by)


def alertname(alert: Alert) -> str:
    return alert.labels.get("alertname") or alert.summary


def from_alertmanager(alert: dict, common_labels: dict[str, str], external_url: str | None) -> Alert:
    """One alert of an Alertmanager webhook v4 body (already shape-validated)."""
    labels: dict[str, str] = {**common_labels, **alert.get("labels", {})}
    annotations: dict[str, str] = alert.get("annotations") or {}
    starts_at: datetime | None = alert.get("startsAt")
    ends_at: datetime | None = alert.get("endsAt")
    if ends_at is not None and ends_at.isoformat().startswith(ZERO_TIME_PREFIX):
        ends_at = None
    # Alertmanager's fingerprint alone (a hash of the labels), not + startsAt: each Alertmanager of an HA pair
    # stamps its own startsAt on alerts that arrive without one, and a re-fire is a status change of the same
    # alert within an incident (a later incident gets its own row anyway).
    fingerprint = alert.get("fingerprint") or "|".join(f"{k}={v}" for k, v in sorted(labels.items()))
    name = labels.get("alertname", "alert")
    return Alert(
        fingerprint=fingerprint,
        status=AlertStatus.resolved if alert.get("status") == "resolved" else AlertStatus.firing,
        summary=annotations.get("summary") or annotations.get("description") or name,
        severity=map_severity(labels.get("severity")),
        raw_severity=labels.get("severity"),
        service=labels.get("service") or labels.get("job") or "unknown",
        source=external_url or "alertmanager",
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        url=alert.get("generatorURL"),
    )


def label_blocks(details: dict | None) -> list[dict[str, str]]:
    """Alertmanager's default pagerduty_configs put labels only in `custom_details.firing` text: one
    `Labels:` block per alert of the Alertmanager group."""
    if not isinstance(details, dict) or not isinstance(details.get("firing"), str):
        return []
    blocks: list[dict[str, str]] = []
    in_labels = False
    for line in details["firing"].splitlines():
        if line.strip() == "Labels:":
            blocks.append({})
            in_labels = True
        elif line.strip().endswith(":"):
            in_labels = False
        elif in_labels and (m := _LABEL_LINE.match(line)):
            blocks[-1][m.group(1)] = m.group(2)
    return blocks


def common_labels(blocks: list[dict[str, str]]) -> dict[str, str]:
    """The labels every alert of the group shares (what names the group)."""
    if not blocks:
        return {}
    return {k: v for k, v in blocks[0].items() if all(b.get(k) == v for b in blocks[1:])}


def most_severe(raw: list[str]) -> Severity:
    return min((map_severity(r) for r in raw), key=lambda s: s.rank, default=DEFAULT_SEVERITY)


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def pagerduty_links(links: object, images: object) -> list[AlertLink]:
    """PagerDuty's `links` ({href, text}) and `images` ({src, href, alt}); malformed entries are skipped, since
    PagerDuty takes the event anyway and a refused trigger is a lost page."""
    out: list[AlertLink] = []
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and isinstance(link.get("href"), str) and link["href"].strip():
            out.append(AlertLink(href=link["href"].strip(), text=_text(link.get("text") or "")))
    for image in images if isinstance(images, list) else []:
        if isinstance(image, dict) and isinstance(image.get("src"), str) and image["src"].strip():
            src = image["src"].strip()
            href = image.get("href") if isinstance(image.get("href"), str) and image["href"].strip() else src
            out.append(AlertLink(href=href.strip(), text=_text(image.get("alt") or ""), image=src))
    return out


def from_pagerduty(
    *, dedup_key: str, summary: str, source: str, severity: str, component: str | None, group: str | None,
    klass: str | None, custom_details: dict | None, timestamp: datetime | None, client_url: str | None,
    links: object = None, images: object = None,
) -> Alert:
    """A PagerDuty Events v2 trigger."""
    blocks = label_blocks(custom_details)
    found = common_labels(blocks)
    summary = _FIRING_PREFIX.sub("", summary).strip() or summary  # the [FIRING:n] count goes stale at once
    name = klass or found.get("alertname") or summary[:200]
    service = component or found.get("service") or group or source
    labels = {**found, "alertname": name, "service": service, "source": source}
    if group:
        labels["group"] = group
    # Alertmanager without templates sends "error" but keeps each alert's severity label in the text:
    # the group is as severe as its most severe alert.
    block_severities = [b["severity"] for b in blocks if "severity" in b]
    from_blocks = severity == "error" and bool(block_severities)
    mapped = most_severe(block_severities) if from_blocks else map_severity(severity)
    raw = min(block_severities, key=lambda r: map_severity(r).rank) if from_blocks else severity
    return Alert(
        fingerprint=dedup_key,
        summary=summary,
        severity=mapped,
        raw_severity=raw,
        service=service,
        source=source,
        labels=labels,
        # A nested detail is kept as JSON, not as Python's repr of a dict.
        annotations={k: _text(v) for k, v in custom_details.items()} if isinstance(custom_details, dict) else {},
        starts_at=timestamp,
        url=client_url,
        links=pagerduty_links(links, images),
    )
