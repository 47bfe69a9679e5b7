"""`vigil tail`: follow new incidents and their timelines by polling the API (it has no event stream)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime

import click

from vigilctl.http import Api, ApiRefused, Unreachable
from vigilctl.render import timeline_line

# The API's largest page: tail follows the open incidents among the newest this many.
PAGE = 200
FINAL = {"closed", "ended"}


class Follower:
    """Remembers the last timeline entry shown per incident, so each poll yields only what is new."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.shown: dict[str, int] = {}  # incident id -> highest timeline seq already shown
        self.finished: set[str] = set()  # closed or ended: its timeline will not grow

    def start(self) -> None:
        """Take what exists now as seen: tail shows what happens from here on."""
        for item in self.api.get("/api/v1/incidents", limit=PAGE)["items"]:
            if item["status"] in FINAL:
                self.finished.add(item["id"])
            else:
                self.shown[item["id"]] = max((e["seq"] for e in self._timeline(item["id"])), default=0)

    def poll(self) -> list[tuple[str, dict]]:
        """New timeline entries since the last poll, oldest first."""
        fresh: list[tuple[str, dict]] = []
        for item in self.api.get("/api/v1/incidents", limit=PAGE)["items"]:
            ref = item["id"]
            if ref in self.finished:
                continue
            # A note changes no field of the incident, so every open one's timeline is read each poll.
            after = self.shown.get(ref, 0)
            entries = [e for e in self._timeline(ref) if e["seq"] > after]
            fresh += [(ref, e) for e in entries]
            if entries:
                self.shown[ref] = max(e["seq"] for e in entries)
            if item["status"] in FINAL:
                self.finished.add(ref)
                self.shown.pop(ref, None)
        # Parsed, not compared as text: a time on a whole second is written without its fraction.
        return sorted(fresh, key=lambda pair: (datetime.fromisoformat(pair[1]["at"]), pair[0], pair[1]["seq"]))

    def _timeline(self, ref: str) -> list[dict]:
        return self.api.get(f"/api/v1/incidents/{ref}")["timeline"]


def follow(api: Api, *, interval: float, max_events: int | None, as_json: bool) -> Iterator[str]:
    """Lines to print, until `max_events` (or forever); transient outages are reported and retried."""
    follower = Follower(api)
    follower.start()
    click.echo(f"vigil tail: following {api.url} every {interval:g}s (Ctrl-C stops)", err=True)
    printed = 0
    down = False
    while max_events is None or printed < max_events:
        time.sleep(interval)  # polling interval, not a wait for a condition
        try:
            events = follower.poll()
        except (Unreachable, ApiRefused) as err:
            # A restart or a 503 from the API is worth waiting out; a refused key or role is not.
            if isinstance(err, ApiRefused) and err.status < 500:
                raise
            if not down:
                click.echo(f"vigil tail: {err.format_message()} (retrying every {interval:g}s)", err=True)
            down = True
            continue
        if down:
            click.echo("vigil tail: reconnected", err=True)
            down = False
        for ref, entry in events[: None if max_events is None else max_events - printed]:
            printed += 1
            yield json.dumps({"incident": ref, **entry}, ensure_ascii=False) if as_json else timeline_line(ref, entry)
