"""Change events on an incident, at read time: merged into its timeline by time and listed as recent changes."""

from __future__ import annotations

import heapq
from datetime import datetime

from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from api.incidents.schemas import ChangeRead, TimelineRead
from vigil import changes

CHANGE_KIND = "change"


def of_incident(*, session: Session, row: Row, now: datetime | None = None) -> tuple[list[ChangeRead], list[ChangeRead]]:
    """(recent, while open) for the incident `row`, as vigil.changes.of_incident reads them in one statement."""
    recent, while_open = changes.of_incident(session, service=row.service, created_at=row.created_at,
                                             closed_at=row.closed_at or row.ended_at, now=now)
    return ([ChangeRead.model_validate(c, from_attributes=True) for c in recent],
            [ChangeRead.model_validate(c, from_attributes=True) for c in while_open])


def merged(timeline: list[TimelineRead], while_open: list[ChangeRead]) -> list[TimelineRead]:
    """The timeline with the changes made to its service while the incident was open, each in its place by time."""
    entries = [
        # seq 0: a change is not an event of the incident (and `vigil tail`, which follows seq, skips it).
        TimelineRead(seq=0, at=c.at, kind=CHANGE_KIND, actor=c.source or "change event", message=c.summary)
        for c in while_open
    ]
    # heapq.merge keeps the incident's own order (by seq) and places each change before the first later entry.
    return list(heapq.merge(timeline, entries, key=lambda e: e.at))
