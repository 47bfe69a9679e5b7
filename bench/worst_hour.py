"""The worst hour (issue 11): one command per scenario prints each figure of the issue's table beside its
baseline, measured in the same run, the load average before and after, and the lost / double-counted check.
It prints figures; it is not a pass/fail test.

    .venv/bin/python -m bench.worst_hour burst      # 300 new incidents at once: alert -> first page, CPU per incident
    .venv/bin/python -m bench.worst_hour storm      # single-alert and batched storms, API CPU per request
    .venv/bin/python -m bench.worst_hour ack        # REST acknowledge vs bare execute_update
    .venv/bin/python -m bench.worst_hour scale      # rung lateness and worker RSS with 2,000 open (--open 10000)
    .venv/bin/python -m bench.worst_hour history    # history events of one full lifecycle, by type

Every scenario takes --quick (a smoke size), --concurrency, --database-url (PostgreSQL: THAT DATABASE IS
WIPED FIRST; use a database of its own such as vigil_bench_worst, never the test suite's) and --log-file.
The stack is bench/stack.py's: one Temporal dev server, `python worker.py` and `uvicorn api.main:app` in
their own processes, an SMTP sink, and the baselines' trivial workflow (bench/workflows.py). Figures and how
to read them: docs/benchmarks.md, "Worst hour (issue 11)".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowExecutionStatus

from bench.stack import (
    BASELINE_TASK_QUEUE,
    SETTLE_TIMEOUT_S,
    Call,
    Load,
    Stack,
    StackOptions,
    child_processes,
    cpu_delta,
    cpu_seconds,
    free_port,
    http_senders,
    load_line,
    machine_line,
    measure_bare_starts,
    measure_signal_with_start,
    pagerduty_trigger,
    percentile,
    post,
    progress,
    rss_kib,
    run_concurrently,
    settle_projections,
    temporal_call,
    until_quiet,
    uvicorn_command,
    vigil_stack,
    warm_up,
)
from bench.storm import ALERTMANAGER_PATH, StormCheck, StormSpec, check_storm, measure_storm, storm_bodies
from bench.workflows import BaselineWorkflow
from vigil.contracts import workflow_id
from vigil.models import AlertRow, NotificationAttempt, TimelineEvent
from workflows.incident import IncidentWorkflow

JSON = {"Content-Type": "application/json"}
INC = re.compile(r"INC-(\d+)")
DISAGREE = 1.5  # the issue: repeat a run whose baseline brackets disagree by more than this


# --- what a scenario reports -----------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    measured: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""


@dataclass
class Report:
    scenario: str
    database: str
    setup: str = ""
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    lines: list[str] = field(default_factory=list)  # details, printed before the table
    rows: list[Row] = field(default_factory=list)
    lost: int = 0
    double: int = 0
    checks: list[tuple[str, bool]] = field(default_factory=list)  # correctness: exact counts, each page once

    def note(self, line: str) -> None:
        self.lines.append(line)
        progress(line)

    def check(self, what: str, ok: bool) -> None:
        self.checks.append((what, ok))
        progress(f"check: {what} -> {'ok' if ok else 'MISMATCH'}")

    def render(self) -> str:
        rows = [Row("figure", "measured", "baseline (same run)", "ratio", "target (issue 11)"), *self.rows,
                Row("lost / double-counted alerts", f"{self.lost} / {self.double}", "", "", "0 / 0")]
        cells = [[r.figure, r.measured, r.baseline, r.ratio, r.target] for r in rows]
        widths = [max(len(c[i]) for c in cells) for i in range(5)]
        table = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
        bad = [what for what, ok in self.checks if not ok]
        return "\n".join([
            "", f"== Vigil worst hour (issue 11): {self.scenario} ==", machine_line(self.database),
            load_line(self.load_before, self.load_after), self.setup,
            "", *self.lines, "", *table, "",
            "correctness: " + ("all exact (" + "; ".join(w for w, _ in self.checks) + ")" if not bad and self.checks
                               else "MISMATCH in: " + "; ".join(bad) if bad else "no check"),
        ])


def ms(seconds: float) -> str:
    return f"{1000 * seconds:,.2f} ms" if abs(seconds) < 0.01 else f"{1000 * seconds:,.1f} ms"


def s_(seconds: float) -> str:
    return f"{seconds:,.2f} s"


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    return percentile(values, 0.5), percentile(values, 0.99), max(values) if values else float("nan")


def p50_p99_max(values: Sequence[float], unit: Callable[[float], str] = s_) -> str:
    p50, p99, top = spread(values)
    return f"p50 {unit(p50)}, p99 {unit(p99)}, max {unit(top)}"


def bracket(rep: Report, label: str, before: float, after: float) -> float:
    """The mean of two baseline runs around a measurement; says so when they disagree by more than 1.5x."""
    low, high = sorted((before, after))
    if low > 0 and high / low > DISAGREE:
        rep.note(f"!! {label}: the bracketing baselines disagree by {high / low:.2f}x (> {DISAGREE}x): "
                 "repeat this run on a quieter machine")
    return (before + after) / 2


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def incident_of(call: Call) -> int:
    """The incident a /v2/enqueue answer names (`Event processed: INC-12`)."""
    match = INC.search((call.body or {}).get("message", ""))
    if match is None:
        raise RuntimeError(f"no incident in the answer {call.body}")
    return int(match.group(1))


async def deadline(what: str, done: Callable[[], Awaitable[bool] | bool], timeout: float, every: float = 0.25) -> float:
    """Wait until `done()` (polled), at most `timeout` seconds; seconds waited. Raises past the deadline."""
    start = time.monotonic()
    while True:
        result = done()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(every)


async def open_incidents(stack: Stack, n: int, concurrency: int, prefix: str, label: str,
                         severity: str = "critical") -> tuple[Load, dict[int, float]]:
    """N PagerDuty triggers on new components (so N new incidents) over /v2/enqueue; each incident's number
    with the moment its request was sent (time.monotonic())."""
    bodies = [pagerduty_trigger(stack.integration_key, i, severity, prefix) for i in range(n)]
    sent: dict[int, float] = {}
    numbers: list[int] = []

    def accepted(call: Call) -> None:
        number = incident_of(call)
        numbers.append(number)
        sent[number] = call.started

    async with http_senders(stack.base_url, concurrency) as https:
        load = await run_concurrently(
            label, "incidents", bodies, concurrency, lambda i, body: post(https[i], "/v2/enqueue", body, JSON, 1),
            on_accept=accepted,
        )
    if len(numbers) != len(sent):
        progress(f"!! {len(numbers) - len(sent)} requests were answered with an incident another one opened")
    return load, sent


async def alert_rows(stack: Stack, prefix: str) -> tuple[int, int]:
    """Alert rows of `prefix-…` dedup keys, and the distinct incidents they are in."""
    def read() -> tuple[int, int]:
        with stack.sessions() as session:
            rows = session.execute(
                select(AlertRow.incident_number).where(AlertRow.fingerprint.like(f"{prefix}-%"))
            ).scalars().all()
        return len(rows), len(set(rows))

    return await asyncio.to_thread(read)


async def count_new(rep: Report, stack: Stack, prefix: str, n: int, load: Load) -> None:
    """Lost / double-counted for N one-alert triggers that each open an incident."""
    rows, incidents = await alert_rows(stack, prefix)
    rep.lost += max(0, n - rows) + load.never_accepted
    rep.double += max(0, rows - n)
    rep.check(f"{n} triggers: {rows} alert rows in {incidents} incidents", rows == incidents == n)


def first_pages(stack: Stack, numbers: set[int]) -> dict[int, list[float]]:
    """Arrival times of the emails the sink holds for each incident in `numbers`."""
    out: dict[int, list[float]] = defaultdict(list)
    for mail in list(stack.inbox):
        match = INC.fullmatch(mail.incident)
        if match and int(match.group(1)) in numbers:
            out[int(match.group(1))].append(mail.at)
    return out


async def cpu_through(run: Awaitable[Load], then: Callable[[], Awaitable[object]] | None = None) -> tuple[Load, dict[str, float]]:
    """CPU seconds per process from the first call until the work it caused has drained: `then` (e.g. every
    first page sent), then until the Temporal server and the worker are quiet."""
    before = cpu_seconds()
    load = await run
    if then is not None:
        await then()
    await until_quiet()
    return load, cpu_delta(before, cpu_seconds())


async def bare_start_cpu(rep: Report, stack: Stack, n: int, concurrency: int, tag: str) -> float:
    """Temporal server CPU seconds per bare start (the calls, then until quiet)."""
    load, cpu = await cpu_through(measure_bare_starts(stack, n, concurrency, tag))
    per = cpu.get("Temporal server", 0.0) / max(1, load.items)
    rep.note(load.line() + f"; Temporal server CPU per start {ms(per)} (until quiet)")
    rep.lost += load.never_accepted
    return per


# --- 1. burst ---------------------------------------------------------------------------------------


async def burst(stack: Stack, a: argparse.Namespace, rep: Report) -> None:
    n, c = a.incidents, a.concurrency
    rep.setup = (f"burst: {n} PagerDuty triggers (/v2/enqueue), one new component each, "
                 + (f"all {n} at once" if c >= n else f"{c} concurrent senders") + f"; bare starts: {n}, same senders")
    await warm_up(stack, c)
    await until_quiet()
    bare_before = await bare_start_cpu(rep, stack, n, c, "before")
    sent: dict[int, float] = {}

    async def all_paged() -> None:
        await deadline("every new incident's first page", lambda: len(first_pages(stack, set(sent))) >= len(sent),
                       SETTLE_TIMEOUT_S)
        await settle_projections(stack, sorted(sent), alerts=len(sent))

    async def opening() -> Load:
        load, opened = await open_incidents(stack, n, c, "burst", "Vigil new incidents (/v2/enqueue)")
        sent.update(opened)
        return load

    load, cpu = await cpu_through(opening(), all_paged)
    rep.note(load.line())
    rep.note("CPU from the first alert until every first page was sent and the server and worker were quiet: "
             + ", ".join(f"{name} {ms(sec)}" for name, sec in cpu.items()))
    bare_after = await bare_start_cpu(rep, stack, n, c, "after")

    await until_quiet()
    pages = first_pages(stack, set(sent))
    latency = [min(pages[k]) - sent[k] for k in sent if pages.get(k)]
    last = max(max(times) for times in pages.values()) - load.ended if pages else float("nan")
    bare = bracket(rep, "bare start CPU", bare_before, bare_after)
    server = cpu.get("Temporal server", 0.0) / max(1, len(sent))
    worker = cpu.get("worker process", 0.0) / max(1, len(sent))
    api = cpu.get("API process", 0.0) / max(1, len(sent))
    p50, p99, top = spread(latency)
    rep.rows += [
        Row("alert -> first page, per incident", f"p50 {s_(p50)}, p99 {s_(p99)}, max {s_(top)}", "", "",
            "p99 <= 10 s (stretch 5 s)"),
        Row("last page after the burst ended", s_(last)),
        Row("Temporal server CPU per new incident", ms(server), f"{ms(bare)} per bare start "
            f"({ms(bare_before)} / {ms(bare_after)})", ratio(server, bare), "<= 3x"),
        Row("worker CPU per new incident", ms(worker), "", "", "<= 30 ms"),
        Row("API CPU per new incident", ms(api)),
        Row("new incidents accepted/s", f"{load.rate:,.1f}", f"request p50 {load.percentile_ms(0.5):.0f} ms, "
            f"p99 {load.percentile_ms(0.99):.0f} ms"),
    ]
    await count_new(rep, stack, "burst", n, load)
    twice = {k: len(v) for k, v in pages.items() if len(v) > 1}
    oncall = all(m.to.endswith("oncall@localhost") for m in stack.inbox if INC.fullmatch(m.incident)
                 and int(INC.fullmatch(m.incident).group(1)) in sent)  # type: ignore[union-attr]
    rep.check(f"{len(pages)} of {n} incidents paged, {len(twice)} of them more than once, all on the first rung "
              "(oncall email)", len(pages) == n and not twice and oncall)


# --- 2. storm -------------------------------------------------------------------------------------------


async def tiny_api_cpu(rep: Report, base_url: str, bodies: Sequence[tuple[bytes, int]], concurrency: int,
                       tag: str) -> float:
    """CPU seconds per request of the baseline app (bench/tiny_api.py) answering the same bodies."""
    async with http_senders(base_url, concurrency) as https:
        load = await run_concurrently(
            f"baseline app (same FastAPI/uvicorn/pydantic, parse and 202) [{tag}]", "requests", bodies, concurrency,
            lambda i, job: post(https[i], ALERTMANAGER_PATH, job[0], JSON, 1),
        )
    per = load.cpu.get("baseline API process", 0.0) / max(1, load.items)
    rep.note(load.line() + f"; its CPU per request {ms(per)}")
    return per


async def storm(stack: Stack, a: argparse.Namespace, rep: Report) -> None:
    c = a.concurrency
    single = StormSpec(a.alerts, a.fingerprints, a.groups, 1, a.seed, prefix="single")
    batched = StormSpec(a.batched_alerts, a.fingerprints, a.groups, 100, a.seed, prefix="batched")
    rep.setup = (f"storm: {c} concurrent senders; single-alert storm {single.alerts} alerts (1/request), batched "
                 f"{batched.alerts} alerts (100/request), each over {a.fingerprints} fingerprints in {a.groups} "
                 f"groups; baseline {a.signals} signal-with-starts over {a.signal_workflows} workflows before, "
                 f"between and after; API baseline: bench/tiny_api.py, {a.tiny_requests} requests before and after")
    port = free_port()
    tiny_url = f"http://127.0.0.1:{port}"
    tiny_bodies = storm_bodies(single)[0][: a.tiny_requests]
    log = a.log_file or stack.tmp / "tiny-api.log"
    async with child_processes({"baseline API process": uvicorn_command("bench.tiny_api:app", port)},
                               dict(os.environ), log) as procs:
        async def tiny_up() -> bool:
            if procs["baseline API process"].poll() is not None:
                raise RuntimeError(f"the baseline app exited; see {log}")
            try:
                async with httpx.AsyncClient(base_url=tiny_url, timeout=2) as http:
                    return (await http.get("/openapi.json")).status_code == 200
            except httpx.HTTPError:
                return False

        await deadline("the baseline app listening", tiny_up, 30)
        await warm_up(stack, c)
        await tiny_api_cpu(rep, tiny_url, tiny_bodies[: c * 4], c, "warm-up")
        await until_quiet()
        tiny = [await tiny_api_cpu(rep, tiny_url, tiny_bodies, c, "before")]
        sws = [await measure_signal_with_start(stack, a.signals, a.signal_workflows, c, "before")]
        rep.note(sws[-1].line())
        storms: list[tuple[Load, StormCheck]] = []
        for spec in (single, batched):
            load, expected, outcomes = await measure_storm(
                stack, spec, c, f"storm, {spec.alerts_per_request} alert(s)/request")
            rep.note(load.line())
            check = await check_storm(stack, spec, expected, outcomes)
            storms.append((load, check))
            rep.note(f"read back: {sum(check.counted.values())} of {sum(expected.values())} alerts counted, "
                     f"{check.alert_rows} rows for {len(expected)} fingerprints, {len(check.incidents)} incidents; "
                     "background work settled " + ("NOT within the deadline" if check.settle_seconds is None
                                                     else f"{check.settle_seconds:.1f} s") + " after the burst"
                     + "".join(f"\n  {m}" for m in check.mismatches()))
            rep.lost += check.lost + load.never_accepted
            rep.double += check.double_counted
            rep.check(f"{spec.prefix} storm counts exact", check.exact)
            await until_quiet()
            sws.append(await measure_signal_with_start(stack, a.signals, a.signal_workflows, c,
                                                       "between" if spec is single else "after"))
            rep.note(sws[-1].line())
        tiny.append(await tiny_api_cpu(rep, tiny_url, tiny_bodies, c, "after"))

    (one, _), (many, _) = storms
    sws_single = bracket(rep, "signal-with-start around the single-alert storm", sws[0].rate, sws[1].rate)
    sws_batched = bracket(rep, "signal-with-start around the batched storm", sws[1].rate, sws[2].rate)
    tiny_cpu = bracket(rep, "baseline app CPU per request", tiny[0], tiny[1])
    api_cpu = one.cpu.get("API process", 0.0) / max(1, one.jobs)
    rep.rows += [
        Row("single-alert storm (1 alert/request), alerts/s", f"{one.rate:,.1f}",
            f"{sws_single:,.1f} signal-with-starts/s", ratio(one.rate, sws_single), ">= 1.0x"),
        Row("API CPU per single-alert request", ms(api_cpu), f"{ms(tiny_cpu)} (bench/tiny_api.py: "
            f"{ms(tiny[0])} / {ms(tiny[1])})", ratio(api_cpu, tiny_cpu), "<= 4x"),
        Row("  single-alert request latency", f"p50 {one.percentile_ms(0.5):.1f} ms, p99 "
            f"{one.percentile_ms(0.99):.1f} ms"),
        Row("batched storm (100 alerts/request), alerts/s", f"{many.rate:,.1f}",
            f"{sws_batched:,.1f} signal-with-starts/s", ratio(many.rate, sws_batched), ">= 20x"),
        Row("  API CPU per alert, batched", ms(many.cpu.get("API process", 0.0) / max(1, many.items))),
    ]


# --- 3. ack ------------------------------------------------------------------------------------------------


async def ack(stack: Stack, a: argparse.Namespace, rep: Report) -> None:
    n, c = a.incidents, a.concurrency
    rep.setup = (f"ack: {n} triggered incidents acknowledged over REST (responder key), {c} concurrent callers; "
                 f"baseline: execute_update on {n} trivial workflows, same callers, before and after")
    warm = await warm_up(stack, c)
    auth = {**JSON, "Authorization": f"Bearer {stack.responder_key}"}
    async with http_senders(stack.base_url, 1) as (http,):
        first = await post(http, f"/api/v1/incidents/INC-{warm}/acknowledge", b"{}", auth, 1, expect=200)
        if not first.items:
            raise RuntimeError(f"the warm-up acknowledge failed: {first.errors}")
    load, sent = await open_incidents(stack, n, c, "ack", "Vigil new incidents to acknowledge")
    rep.note(load.line())
    if await settle_projections(stack, sorted(sent), alerts=len(sent)) is None:
        raise RuntimeError("the incidents' first pages were not all sent")
    await count_new(rep, stack, "ack", n, load)
    await asyncio.gather(*(
        stack.client.start_workflow(BaselineWorkflow.run, id=f"bench-ack-{i}", task_queue=BASELINE_TASK_QUEUE)
        for i in range(n)
    ))
    await until_quiet()

    async def bare(tag: str) -> Load:
        def attempt(_: int, i: int) -> Awaitable[Call]:
            handle = stack.client.get_workflow_handle_for(BaselineWorkflow.run, f"bench-ack-{i}")
            return temporal_call(handle.execute_update(BaselineWorkflow.add, f"{tag}-{i}"))

        load = await run_concurrently(f"bare execute_update [{tag}]", "updates", list(range(n)), c, attempt)
        rep.note(load.line())
        return load

    before = await bare("before")
    numbers = sorted(sent)
    async with http_senders(stack.base_url, c) as https:
        acks = await run_concurrently(
            "REST acknowledge", "acks", numbers, c,
            lambda i, number: post(https[i], f"/api/v1/incidents/INC-{number}/acknowledge", b"{}", auth, 1, 200),
        )
    rep.note(acks.line())

    def acknowledged() -> Counter[int]:
        with stack.sessions() as session:
            return Counter(session.execute(select(TimelineEvent.incident_number).where(
                TimelineEvent.incident_number.in_(numbers), TimelineEvent.kind == "acknowledged")).scalars())

    try:
        await deadline("every ack in the timeline", lambda: asyncio.to_thread(lambda: len(acknowledged()) >= n), 60)
    except TimeoutError as err:
        rep.note(f"!! {err}")
    recorded = await asyncio.to_thread(acknowledged)
    await until_quiet()  # the acks' background work (projections, cancelled timers) is not the baseline's
    after = await bare("after")
    rep.check(f"{acks.items} of {n} acks answered 200; {len(recorded)} incidents acknowledged in the timeline, "
              f"{sum(v > 1 for v in recorded.values())} more than once",
              acks.items == n == len(recorded) and not acks.errors and all(v == 1 for v in recorded.values()))
    for p, label in ((0.5, "p50"), (0.99, "p99")):
        bare_ms = bracket(rep, f"bare execute_update {label}", before.percentile_ms(p), after.percentile_ms(p))
        rep.rows.append(Row(
            f"REST acknowledge {label}", f"{acks.percentile_ms(p):.1f} ms",
            f"{bare_ms:.1f} ms bare execute_update ({before.percentile_ms(p):.1f} / {after.percentile_ms(p):.1f})",
            ratio(acks.percentile_ms(p), bare_ms), "<= 2x" if p == 0.99 else "",
        ))
    rep.rows.append(Row("API CPU per acknowledge", ms(acks.cpu.get("API process", 0.0) / max(1, acks.items))))


# --- 4. scale ----------------------------------------------------------------------------------------------


async def scale(stack: Stack, a: argparse.Namespace, rep: Report) -> None:
    n, c, wait = a.open, a.concurrency, a.wait
    rep.setup = (f"scale: {n} open incidents (default ladder: email, then SMS after VIGIL_ESCALATION_STEP_WAIT_"
                 f"SECONDS={wait}), VIGIL_WORKER_MAX_CACHED_WORKFLOWS={n + a.cache_margin}; {c} concurrent senders")
    warm = await warm_up(stack, c)
    await until_quiet()
    worker = stack.pids["worker process"]
    rss_idle = rss_kib(worker)
    load, sent = await open_incidents(stack, n, c, "open", f"open {n} incidents")
    rep.note(load.line())
    opened_at = datetime.now(UTC)
    settled = await settle_projections(stack, sorted(sent), alerts=len(sent), timeout=max(SETTLE_TIMEOUT_S, wait))
    rep.note(f"every first page sent {settled if settled is None else f'{settled:.1f} s'} after the last open")
    await count_new(rep, stack, "open", n, load)
    await until_quiet()
    rss_open = rss_kib(worker)

    due: dict[int, datetime] = {}
    late_query = 0

    async def query(_: int, number: int) -> Call:
        nonlocal late_query
        state = await stack.client.get_workflow_handle(workflow_id(number)).query(IncidentWorkflow.state)
        if state.ladder_step == 1 and state.next_escalation_at is not None:
            due[number] = state.next_escalation_at
        else:
            late_query += 1  # the second rung had started before this query: its due time is unknown here
        return Call(items=1)

    queried = await run_concurrently("state query of every open incident", "queries", sorted(sent), c, query)
    rep.note(queried.line())
    if not due:
        raise RuntimeError("no incident was still waiting for its second rung: raise --wait")
    last_due = max(due.values())
    rep.note(f"second rungs due from {min(due.values()):%H:%M:%S} to {last_due:%H:%M:%S} UTC; "
             f"{sum(d < opened_at for d in due.values())} came due before the last incident was open; "
             f"{late_query} had started before their state was read (not counted)")

    def sms_pages() -> list[tuple[int, datetime, datetime | None, str]]:
        with stack.sessions() as session:
            return list(session.execute(
                select(NotificationAttempt.incident_number, NotificationAttempt.started_at,
                       NotificationAttempt.finished_at, NotificationAttempt.status)
                .where(NotificationAttempt.incident_number > warm, NotificationAttempt.channel == "sms")
            ).tuples())

    async def all_sent() -> bool:
        if datetime.now(UTC) < last_due:
            return False
        rows = await asyncio.to_thread(sms_pages)
        return len({number for number, _, finished, _ in rows if finished is not None and number in due}) >= len(due)

    left = (last_due - datetime.now(UTC)).total_seconds()
    progress(f"waiting {left:.0f} s for the last second rung to come due, then for its page")
    await deadline("every second-rung page sent", all_sent, max(0.0, left) + SETTLE_TIMEOUT_S, every=1.0)
    rss_fired = rss_kib(worker)
    rows = await asyncio.to_thread(sms_pages)
    per_incident = Counter(number for number, *_ in rows)
    started = [(s - due[k]).total_seconds() for k, s, _, _ in rows if k in due]
    finished = [(f - due[k]).total_seconds() for k, _, f, _ in rows if k in due and f is not None]
    timer_due, stages = await rung_stages(stack, due, {k: s for k, s, _, _ in rows if k in due}, c)
    after_timer = [(f - timer_due[k]).total_seconds() for k, _, f, _ in rows if k in timer_due and f is not None]
    statuses = Counter(status for *_, status in rows)
    mib = 1024
    rep.rows += [
        Row(f"rung lateness after its timer is due (SMS sent - timer due), {len(after_timer)} of {n} open",
            p50_p99_max(after_timer), "", "", "p99 <= 0.5 s at 2,000; <= 1 s at 10,000"),
        Row("  SMS sent - the due time the workflow states (next_escalation_at)", p50_p99_max(finished)),
        Row("  page started - due (activity start)", p50_p99_max(started)),
        Row("worker RSS with all open", f"{rss_open / mib:,.0f} MiB", f"{rss_idle / mib:,.0f} MiB before opening",
            f"+{(rss_open - rss_idle) / mib:,.0f} MiB", "<= 2 GiB RSS at 10,000"),
        Row("  per open incident", f"{(rss_open - rss_idle) / max(1, n):,.1f} KiB"),
        Row("  after the second rungs fired", f"{rss_fired / mib:,.0f} MiB"),
        Row("incidents opened/s", f"{load.rate:,.1f}"),
    ]
    rep.lines += ["where a second rung's lateness goes (from each incident's history; seconds):",
                  *(f"  {name:<44} {p50_p99_max(values)}" for name, values in stages.items())]
    rep.check(f"{len(per_incident)} incidents sent their SMS rung ({dict(statuses)}), "
              f"{sum(1 for v in per_incident.values() if v > 1)} more than once",
              len(per_incident) == n and all(v == 1 for v in per_incident.values()))


RUNG_STAGES = (
    "next_escalation_at -> timer due (timer start)",
    "timer due -> TIMER_FIRED (server timer)",
    "TIMER_FIRED -> workflow task started (queue)",
    "workflow task started -> completed (worker)",
    "completed -> SMS activity started (queue)",
    "activity started -> page started (activity)",
)


def _seconds(event: HistoryEvent) -> float:
    return event.event_time.ToDatetime(tzinfo=UTC).timestamp()


def rung_stage_times(events: Sequence[HistoryEvent], stated_due: datetime,
                     page_started: datetime) -> tuple[datetime, list[float]] | None:
    """The second rung's path through one history, as the stage durations of RUNG_STAGES: the last timer
    fired before the SMS activity was scheduled, from its due time, the workflow task that handled it, the
    activity's start and the page's own start (the notification log's started_at). The workflow states the rung
    due at its activation time plus the wait; the server starts the timer when that workflow task completes."""
    kinds = [e.event_type for e in events]

    def first(kind: EventType.ValueType, indices: range) -> int | None:
        return next((i for i in indices if kinds[i] == kind), None)

    sms = next((i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and "sms" in _summary(e).lower()), None)
    if sms is None:
        return None
    fired = first(EventType.EVENT_TYPE_TIMER_FIRED, range(sms, -1, -1))
    if fired is None:
        return None
    started_id = events[fired].timer_fired_event_attributes.started_event_id
    timer = next((i for i, e in enumerate(events) if e.event_id == started_id), None)
    task_started = first(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, range(fired, sms))
    task_done = first(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, range(task_started or fired, sms))
    act_started = next((i for i in range(sms, len(events)) if kinds[i] == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
                        and events[i].activity_task_started_event_attributes.scheduled_event_id
                        == events[sms].event_id), None)
    if timer is None or task_started is None or task_done is None or act_started is None:
        return None
    t = events[timer]
    due = _seconds(t) + t.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
    points = [stated_due.timestamp(), due, *(_seconds(events[i]) for i in (fired, task_started, task_done, act_started)),
              page_started.timestamp()]
    return datetime.fromtimestamp(due, UTC), [b - a for a, b in zip(points, points[1:])]


async def rung_stages(stack: Stack, due: dict[int, datetime], page_started: dict[int, datetime],
                      concurrency: int) -> tuple[dict[int, datetime], dict[str, list[float]]]:
    """Each second rung's timer due time, and each stage of its lateness, read back from the histories."""
    stages: dict[str, list[float]] = {name: [] for name in RUNG_STAGES}
    timer_due: dict[int, datetime] = {}

    async def read(_: int, number: int) -> Call:
        if number in page_started:
            events = list((await stack.client.get_workflow_handle(workflow_id(number)).fetch_history()).events)
            found = rung_stage_times(events, due[number], page_started[number])
            if found is not None:
                timer_due[number] = found[0]
                for name, value in zip(RUNG_STAGES, found[1]):
                    stages[name].append(value)
        return Call(items=1)

    await run_concurrently("histories of the second rungs", "histories", sorted(due), concurrency, read)
    return timer_due, stages


# --- 5. history --------------------------------------------------------------------------------------------


def _name(event: HistoryEvent) -> str:
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()


def _step(event: HistoryEvent) -> str:
    """An event of the sequence, short: `wft` for a workflow task's three events, activities by name."""
    name = _name(event).replace("workflow_task_", "wft_").replace("workflow_execution_", "").replace(
        "upsert_workflow_search_attributes", "upsert")
    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        return f"{name}({event.activity_task_scheduled_event_attributes.activity_type.name})"
    return name


def _summary(event: HistoryEvent) -> str:
    try:
        return json.loads(event.user_metadata.summary.data) if event.user_metadata.summary.data else ""
    except ValueError:
        return ""


def breakdown(events: Sequence[HistoryEvent]) -> list[str]:
    """What a lifecycle's history is made of, grouped the way the issue counts it."""
    kinds = Counter(_name(e) for e in events)
    activities = Counter(e.activity_task_scheduled_event_attributes.activity_type.name for e in events
                         if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    markers = Counter(e.marker_recorded_event_attributes.marker_name for e in events
                      if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED)
    timers = [_summary(e) or "(no summary)" for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    wt = {k.removeprefix("workflow_task_"): v for k, v in kinds.items() if k.startswith("workflow_task_")}
    act = {k.removeprefix("activity_task_"): v for k, v in kinds.items() if k.startswith("activity_task_")}
    timer_kinds = {k.removeprefix("timer_"): v for k, v in kinds.items() if k.startswith("timer_")}
    other = {k: v for k, v in kinds.items()
             if not k.startswith(("workflow_task_", "activity_task_", "timer_")) and k != "marker_recorded"}
    return [
        f"  {len(events)} events",
        f"  workflow tasks: {sum(wt.values())} events ({', '.join(f'{k} {v}' for k, v in sorted(wt.items()))})",
        f"  activities: {sum(act.values())} events ({', '.join(f'{k} {v}' for k, v in sorted(act.items()))}); "
        f"{sum(activities.values())} scheduled: " + ", ".join(f"{k} {v}" for k, v in activities.most_common()),
        f"  timers: {sum(timer_kinds.values())} events ({', '.join(f'{k} {v}' for k, v in sorted(timer_kinds.items()))})"
        + (": " + "; ".join(timers) if timers else ""),
        f"  markers: {sum(markers.values())}" + (" (" + ", ".join(f"{k} {v}" for k, v in markers.items()) + ")"
                                                  if markers else ""),
        "  other: " + ", ".join(f"{k} {v}" for k, v in sorted(other.items(), key=lambda kv: (-kv[1], kv[0]))),
    ]


async def history(stack: Stack, a: argparse.Namespace, rep: Report) -> None:
    rep.setup = (f"history: {a.lifecycles} lifecycle(s) one after the other: PagerDuty trigger (warning: no postmortem"
                 f" required) -> first page -> REST acknowledge -> REST resolve -> closed after "
                 f"VIGIL_REOPEN_WINDOW_SECONDS={a.reopen_window}")
    await warm_up(stack, 1)
    auth = {**JSON, "Authorization": f"Bearer {stack.responder_key}"}
    totals: list[int] = []
    latencies: list[float] = []
    kinds_per: list[Counter[str]] = []
    async with http_senders(stack.base_url, 1) as (http,):
        for i in range(a.lifecycles):
            call = await post(http, "/v2/enqueue", pagerduty_trigger(stack.integration_key, i, "warning", "life"), JSON, 1)
            if not call.items:
                raise RuntimeError(f"trigger refused: {call.errors}")
            number = incident_of(call)
            await deadline(f"INC-{number}'s first page", lambda: bool(first_pages(stack, {number})), 60, every=0.01)
            latencies.append(min(first_pages(stack, {number})[number]) - call.started)
            for path, body in (("acknowledge", b"{}"), ("resolve", b'{"resolution": "bench: fixed"}')):
                done = await post(http, f"/api/v1/incidents/INC-{number}/{path}", body, auth, 1, expect=200)
                if not done.items:
                    raise RuntimeError(f"{path} of INC-{number} refused: {done.errors}")
            handle = stack.client.get_workflow_handle(workflow_id(number))

            async def closed() -> bool:
                return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING

            await deadline(f"INC-{number} closed", closed, a.reopen_window + 120, every=0.5)
            status = (await handle.describe()).status
            events = list((await handle.fetch_history()).events)
            totals.append(len(events))
            kinds_per.append(Counter(_name(e) for e in events))
            rep.note(f"INC-{number}: {status.name if status else '?'}, {len(events)} history events")
            if i == 0:
                rep.lines += ["first lifecycle, by type:", *breakdown(events)]
                rep.lines += ["  sequence: " + " ".join(_step(e) for e in events)]
            rep.check(f"INC-{number} completed and paged once",
                      status == WorkflowExecutionStatus.COMPLETED and len(first_pages(stack, {number})[number]) == 1)
        await count_new(rep, stack, "life", a.lifecycles, Load("", "", a.lifecycles, a.lifecycles, 0, [], Counter(), 0))
    def each(kind: str) -> str:
        low, high = min(k[kind] for k in kinds_per), max(k[kind] for k in kinds_per)
        return f"{low}" if low == high else f"{low}-{high}"

    rep.rows += [
        Row("history events, one full lifecycle", f"{min(totals)}" + (f"-{max(totals)}" if max(totals) != min(totals) else ""),
            "", "", "<= 60 (issue: 83)"),
        Row("  workflow tasks (completed)", each("workflow_task_completed"), "", "", "(issue: 13)"),
        Row("  activities (scheduled)", each("activity_task_scheduled"), "", "", "(issue: 9)"),
        Row("  search-attribute upserts", each("upsert_workflow_search_attributes"), "", "", "(issue: 4)"),
        Row("  markers / timers started", f"{each('marker_recorded')} / {each('timer_started')}"),
        Row("alert -> first page, calm", p50_p99_max(latencies, ms), "", "", "(p50 62 ms in the issue)"),
    ]


# --- the command ---------------------------------------------------------------------------------------------


SCENARIOS: dict[str, Callable[[Stack, argparse.Namespace, Report], Awaitable[None]]] = {
    "burst": burst, "storm": storm, "ack": ack, "scale": scale, "history": history,
}


def stack_env(a: argparse.Namespace) -> dict[str, str]:
    if a.scenario == "scale":
        return {"VIGIL_ESCALATION_STEP_WAIT_SECONDS": str(a.wait),
                "VIGIL_WORKER_MAX_CACHED_WORKFLOWS": str(a.open + a.cache_margin)}
    if a.scenario == "history":
        return {"VIGIL_REOPEN_WINDOW_SECONDS": str(a.reopen_window)}
    return {}


async def run(a: argparse.Namespace) -> Report:
    database = make_url(a.database_url).get_backend_name() if a.database_url else "sqlite"
    rep = Report(a.scenario, database, load_before=os.getloadavg())
    opts = StackOptions(a.database_url, a.log_level, a.log_file, env=stack_env(a))
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        async with vigil_stack(opts, Path(tmp)) as stack:
            progress(f"stack up: Temporal dev server, Vigil worker (pid {stack.pids.get('worker process')}), "
                     f"API on {stack.base_url}")
            await SCENARIOS[a.scenario](stack, a, rep)
    rep.load_after = os.getloadavg()
    return rep


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quick", action="store_true", help="smoke size (about 10x smaller)")
    common.add_argument("--concurrency", type=int, default=32, help="concurrent senders (default %(default)s)")
    common.add_argument("--database-url", default=None,
                        help="application DB (default: fresh SQLite in a temp dir). THE DATABASE IS WIPED FIRST: "
                        "use one of its own (vigil_bench_...), never the test suite's.")
    common.add_argument("--log-level", default="INFO", help="Vigil's log level (JSON, into a file)")
    common.add_argument("--log-file", type=Path, default=None, help="keep Vigil's log here (default: temp dir)")
    p = argparse.ArgumentParser(prog="python -m bench.worst_hour", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="scenario", required=True)
    b = sub.add_parser("burst", parents=[common], help="N new incidents at once: alert -> first page, CPU per incident")
    b.add_argument("--incidents", type=int, default=300, help="(default %(default)s; --quick 30)")
    s = sub.add_parser("storm", parents=[common], help="single-alert and batched storms vs signal-with-start")
    s.add_argument("--alerts", type=int, default=10_000, help="single-alert storm size (default %(default)s)")
    s.add_argument("--batched-alerts", type=int, default=20_000, help="batched storm size (default %(default)s)")
    s.add_argument("--fingerprints", type=int, default=200, help="(default %(default)s)")
    s.add_argument("--groups", type=int, default=10, help="(default %(default)s)")
    s.add_argument("--signals", type=int, default=2_000, help="baseline signal-with-starts (default %(default)s)")
    s.add_argument("--signal-workflows", type=int, default=10, help="(default %(default)s)")
    s.add_argument("--tiny-requests", type=int, default=2_000, help="baseline app requests (default %(default)s)")
    s.add_argument("--seed", type=int, default=1)
    k = sub.add_parser("ack", parents=[common], help="REST acknowledge vs bare execute_update")
    k.add_argument("--incidents", type=int, default=200, help="(default %(default)s; --quick 20)")
    c = sub.add_parser("scale", parents=[common], help="rung lateness and worker RSS with N open incidents")
    c.add_argument("--open", type=int, default=2_000, help="open incidents (default %(default)s; --quick 200)")
    c.add_argument("--wait", type=int, default=None,
                   help="seconds between rungs (VIGIL_ESCALATION_STEP_WAIT_SECONDS); default 60 + open/10, so every "
                   "incident is open and its state read before the first second rung is due")
    c.add_argument("--cache-margin", type=int, default=1_000,
                   help="VIGIL_WORKER_MAX_CACHED_WORKFLOWS is --open plus this (default %(default)s)")
    h = sub.add_parser("history", parents=[common], help="history events of one full lifecycle, by type")
    h.add_argument("--lifecycles", type=int, default=3, help="(default %(default)s; --quick 1)")
    h.add_argument("--reopen-window", type=int, default=5, help="VIGIL_REOPEN_WINDOW_SECONDS (default %(default)s)")
    a = p.parse_args(argv)
    if a.quick:
        for name in ("incidents", "alerts", "batched_alerts", "signals", "tiny_requests", "open"):
            if hasattr(a, name):
                setattr(a, name, max(1, getattr(a, name) // 10))
        if hasattr(a, "lifecycles"):
            a.lifecycles = 1
    if a.scenario == "scale" and a.wait is None:
        a.wait = 60 + a.open // 10
    return a


def main(argv: Sequence[str] | None = None) -> None:
    a = parse_args(argv)
    if a.database_url:
        print(f"WARNING: {make_url(a.database_url).render_as_string(hide_password=True)} will be WIPED "
              "(all Vigil tables dropped and re-created).", file=sys.stderr, flush=True)
    progress(f"{a.scenario}: started {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(asyncio.run(run(a)).render(), flush=True)


if __name__ == "__main__":
    main()
