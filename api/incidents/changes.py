"""Change events on an incident, at read time: merged into its timeline by time and listed as recent changes."""

from __future__ import annotations

import heapq
from datetime import datetime

from sqlalchemy import bindparam, literal, select, union_all
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from api.incidents.schemas import ChangeRead, TimelineRead
from vigil import changes
from vigil.models import ChangeEvent, utcnow

CHANGE_KIND = "change"

# Both lists of vigil/changes.py (`recent_changes`, `changes_while_open`) in one statement, built once: each part
# keeps its own window and limit, newest first; `part` says which list a row belongs to.
_C = ChangeEvent.__table__.c
_RECENT, _WHILE_OPEN = 0, 1


def _part(part: int, since: str, until: str, limit: int):  # noqa: ANN202 - a subquery
    return (
        select(literal(part).label("part"), _C.id, _C.at, _C.service, _C.summary, _C.source, _C.custom_details,
               _C.links, _C.received_at)
        .where(_C.service == bindparam("service"), _C.at >= bindparam(since), _C.at <= bindparam(until))
        .order_by(_C.at.desc(), _C.id.desc())
        .limit(limit)
        .subquery()
    )


_READ_CHANGES = union_all(
    *(select(p) for p in (_part(_RECENT, "recent_since", "now", changes.RECENT_LIMIT),
                          _part(_WHILE_OPEN, "opened_at", "open_until", changes.TIMELINE_LIMIT)))
)


def of_incident(*, session: Session, row: Row, now: datetime | None = None) -> tuple[list[ChangeRead], list[ChangeRead]]:
    """(recent, while open) for the incident `row`: its service's changes from RECENT_WINDOW before it opened until
    now, newest first (vigil.changes.recent_changes), and those from its opening to its close (or now), oldest
    first (vigil.changes.changes_while_open)."""
    now = now or utcnow()
    rows = session.execute(_READ_CHANGES, {
        "service": row.service, "recent_since": row.created_at - changes.RECENT_WINDOW, "now": now,
        "opened_at": row.created_at, "open_until": row.closed_at or row.ended_at or now,
    }).all()
    newest_first = sorted(rows, key=lambda r: (r.at, r.id), reverse=True)
    recent = [ChangeRead.model_validate(r) for r in newest_first if r.part == _RECENT]
    while_open = [ChangeRead.model_validate(r) for r in reversed(newest_first) if r.part == _WHILE_OPEN]
    return recent, while_open


def merged(timeline: list[TimelineRead], while_open: list[ChangeRead]) -> list[TimelineRead]:
    """The timeline with the changes made to its service while the incident was open, each in its place by time."""
    entries = [
        # seq 0: a change is not an event of the incident (and `vigil tail`, which follows seq, skips it).
        TimelineRead(seq=0, at=c.at, kind=CHANGE_KIND, actor=c.source or "change event", message=c.summary)
        for c in while_open
    ]
    # heapq.merge keeps the incident's own order (by seq) and places each change before the first later entry.
    return list(heapq.merge(timeline, entries, key=lambda e: e.at))
