"""Change events on an incident, at read time: merged into its timeline by time and listed as recent changes."""

from __future__ import annotations

import heapq

from sqlalchemy.orm import Session

from api.incidents.schemas import ChangeRead, TimelineRead
from vigil import changes

CHANGE_KIND = "change"


def merged_timeline(*, session: Session, number: int, timeline: list[TimelineRead]) -> list[TimelineRead]:
    """The timeline with the changes made to its service while the incident was open, each in its place by time."""
    entries = [
        # seq 0: a change is not an event of the incident (and `vigil tail`, which follows seq, skips it).
        TimelineRead(seq=0, at=c.at, kind=CHANGE_KIND, actor=c.source or "change event", message=c.summary)
        for c in changes.changes_while_open(session, number)
    ]
    # heapq.merge keeps the incident's own order (by seq) and places each change before the first later entry.
    return list(heapq.merge(timeline, entries, key=lambda e: e.at))


def recent(*, session: Session, number: int) -> list[ChangeRead]:
    return [ChangeRead.model_validate(c, from_attributes=True) for c in changes.recent_changes(session, number)]
