"""Human output: tables, one-line timeline entries, local times."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click
from tabulate import tabulate

TITLE_WIDTH = 60


def when(value: str | None) -> str:
    """An API timestamp in the reader's local time, to the second; '-' when unset."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def cut(text: str, width: int = TITLE_WIDTH) -> str:
    text = " ".join(text.split())  # a note's newlines would break the one-row-per-item layout
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: list[list[Any]], headers: list[str]) -> None:
    click.echo(tabulate(rows, headers=headers, tablefmt="plain", disable_numparse=True))


def as_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def incidents(items: list[dict]) -> None:
    table(
        [[i["id"], i["status"], i["severity"], i["service"], cut(i["title"]), when(i["created_at"])] for i in items],
        ["ID", "STATUS", "SEVERITY", "SERVICE", "TITLE", "CREATED"],
    )


def timeline_line(incident: str, entry: dict) -> str:
    """One timeline entry on one line: when, which incident, what, who, and its message."""
    return f"{when(entry['at'])}  {incident}  {entry['kind']:<12}  {entry['actor']}: {cut(entry['message'], 200)}"


def incident(d: dict) -> None:
    click.echo(f"{d['id']}  {d['status']}  {d['severity']}  {d['service']}")
    click.echo(d["title"])
    facts = [
        ("created", when(d["created_at"])),
        # *_name: the actor as people read it ("alert source"); an older server sends the label only.
        ("acknowledged", f"{when(d['acknowledged_at'])} by {d.get('acknowledged_by_name') or d['acknowledged_by']}"
         if d.get("acknowledged_at") else None),
        ("assignee", d.get("assignee")),
        ("snoozed until", when(d["snoozed_until"]) if d.get("snoozed_until") else None),
        ("re-triggers", when(d["retriggers_at"]) if d.get("retriggers_at") and not d.get("snoozed_until") else None),
        ("resolved", f"{when(d['resolved_at'])} by {d.get('resolved_by_name') or d['resolved_by']}"
         if d.get("resolved_at") else None),
        ("resolution", d.get("resolution")),
        ("closed", when(d["closed_at"]) if d.get("closed_at") else None),
        ("reopened", f"{d['reopen_count']} times" if d.get("reopen_count") else None),
        ("jira", d.get("jira_key")),
        ("temporal", d.get("temporal_url")),
    ]
    for name, value in facts:
        if value:
            click.echo(f"  {name + ':':<14}{value}")
    click.echo(f"\nAlerts ({len(d['alerts'])})")
    table(
        [[a["status"], a["count"], a["service"], cut(a["summary"]), when(a["last_seen"])] for a in d["alerts"]],
        ["STATUS", "COUNT", "SERVICE", "SUMMARY", "LAST SEEN"],
    )
    click.echo(f"\nTimeline ({len(d['timeline'])})")
    for entry in d["timeline"]:
        click.echo(timeline_line(d["id"], entry))
    click.echo(f"\nNotifications ({len(d['notifications'])})")
    table(
        [[when(n["started_at"]), n["channel"], n["recipient"] or n["target"], n["status"], n["receipt"] or "-"]
         for n in d["notifications"]],
        ["SENT", "CHANNEL", "TO", "STATUS", "RECEIPT"],
    )
