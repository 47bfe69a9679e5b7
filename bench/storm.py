"""The duplicate storm (issue 3, issue 11): many Alertmanager alerts over few fingerprints, shuffled, each
request carrying alerts of one group; then the exact counts read back. Shared by bench/ingest.py and
bench/worst_hour.py; a `prefix` keeps two storms of one run apart (own fingerprints, services, incidents)."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import select

from bench.stack import STARTS_AT, Load, Stack, http_senders, post, run_concurrently, settle_projections
from vigil.contracts import workflow_id
from vigil.models import AlertRow
from workflows.incident import IncidentWorkflow

ALERTMANAGER_PATH = "/api/v1/integrations/alertmanager"


@dataclass(frozen=True)
class StormSpec:
    alerts: int = 20_000
    fingerprints: int = 200
    groups: int = 10
    alerts_per_request: int = 1
    seed: int = 1
    prefix: str = "storm"

    def fingerprint(self, fp: int) -> str:
        return f"{self.prefix}-{fp:04d}"


@dataclass
class StormCheck:
    """What the DB and the workflows hold after the storm."""

    expected: dict[str, int]
    counted: dict[str, int]
    alert_rows: int
    incidents: list[int]
    history_events: dict[int, int]
    workflow_alerts: dict[int, int]
    outcomes: Counter[str]
    settle_seconds: float | None

    @property
    def lost(self) -> int:
        return sum(max(0, n - self.counted.get(fp, 0)) for fp, n in self.expected.items())

    @property
    def double_counted(self) -> int:
        extra = sum(max(0, self.counted.get(fp, 0) - n) for fp, n in self.expected.items())
        return extra + sum(n for fp, n in self.counted.items() if fp not in self.expected)

    @property
    def exact(self) -> bool:
        return self.counted == self.expected and self.alert_rows == len(self.expected)

    def mismatches(self, limit: int = 10) -> list[str]:
        out = [
            f"{fp}: sent {n}, counted {self.counted.get(fp, 0)}"
            for fp, n in sorted(self.expected.items()) if self.counted.get(fp, 0) != n
        ]
        out += [f"{fp}: not sent, counted {n}" for fp, n in sorted(self.counted.items())
                if fp not in self.expected]
        return out[:limit] + ([f"... and {len(out) - limit} more"] if len(out) > limit else [])


def storm_requests(spec: StormSpec) -> tuple[list[list[int]], Counter[str]]:
    """The storm, shuffled: each request carries alerts of one group (as Alertmanager sends them)."""
    rng = random.Random(spec.seed)
    sequence = [i % spec.fingerprints for i in range(spec.alerts)]
    rng.shuffle(sequence)
    by_group: dict[int, list[int]] = defaultdict(list)
    for fp in sequence:
        by_group[fp % spec.groups].append(fp)
    n = spec.alerts_per_request
    requests = [alerts[i:i + n] for alerts in by_group.values() for i in range(0, len(alerts), n)]
    rng.shuffle(requests)
    return requests, Counter(spec.fingerprint(fp) for fp in sequence)


def alertmanager_body(spec: StormSpec, fps: list[int]) -> bytes:
    group = fps[0] % spec.groups
    name = f"Bench{spec.prefix.title()}{group}"
    common = {"alertname": name, "service": f"{spec.prefix}-{group}", "severity": "warning"}
    alerts = [
        {
            "status": "firing",
            "labels": {**common, "instance": f"host-{fp:04d}"},
            "annotations": {"summary": f"Error budget burning on host-{fp:04d}"},
            "startsAt": STARTS_AT,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": f"http://prometheus.bench:9090/graph?g0.expr=up&instance=host-{fp:04d}",
            "fingerprint": spec.fingerprint(fp),
        }
        for fp in fps
    ]
    body = {
        "version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}', "truncatedAlerts": 0,
        "status": "firing", "receiver": "vigil", "groupLabels": {"alertname": name},
        "commonLabels": common, "commonAnnotations": {}, "externalURL": "http://alertmanager.bench:9093",
        "alerts": alerts,
    }
    return json.dumps(body).encode()


def storm_bodies(spec: StormSpec) -> tuple[list[tuple[bytes, int]], Counter[str]]:
    """Each request's body and how many alerts it carries; and how many alerts each fingerprint gets."""
    requests, expected = storm_requests(spec)
    return [(alertmanager_body(spec, fps), len(fps)) for fps in requests], expected


async def measure_storm(
    stack: Stack, spec: StormSpec, concurrency: int, label: str | None = None
) -> tuple[Load, Counter[str], Counter[str]]:
    bodies, expected = storm_bodies(spec)
    headers = {"Authorization": f"Bearer {stack.integration_key}", "Content-Type": "application/json"}
    outcomes: Counter[str] = Counter()
    async with http_senders(stack.base_url, concurrency) as https:
        load = await run_concurrently(
            label or f"(a) duplicate storm ({spec.alerts_per_request} alert(s)/request)", "alerts", bodies,
            concurrency,
            lambda i, job: post(https[i], ALERTMANAGER_PATH, job[0], headers, job[1]),
            on_accept=lambda call: outcomes.update((call.body or {}).get("outcomes", {})),
        )
    return load, expected, outcomes


async def check_storm(stack: Stack, spec: StormSpec, expected: Counter[str], outcomes: Counter[str]) -> StormCheck:
    def read() -> tuple[dict[str, int], int, list[int]]:
        with stack.sessions() as session:
            rows = session.execute(
                select(AlertRow.fingerprint, AlertRow.count, AlertRow.incident_number).where(
                    AlertRow.fingerprint.like(f"{spec.prefix}-%")
                )
            ).all()
        counted: Counter[str] = Counter()
        for fp, count, _ in rows:
            counted[fp.split("@", 1)[0]] += count
        return dict(counted), len(rows), sorted({number for _, _, number in rows})

    counted, alert_rows, incidents = await asyncio.to_thread(read)
    settle = await settle_projections(stack, incidents, alerts=len(expected))
    histories: dict[int, int] = {}
    known: dict[int, int] = {}
    for number in incidents:
        handle = stack.client.get_workflow_handle(workflow_id(number))
        histories[number] = len((await handle.fetch_history()).events)
        known[number] = len((await handle.query(IncidentWorkflow.state)).alerts)
    return StormCheck(dict(expected), counted, alert_rows, incidents, histories, known, outcomes, settle)
