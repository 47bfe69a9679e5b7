"""Ingest benchmark (issue 3): a duplicate storm against bare signal-with-start, and incident creation
against bare workflow starts. It prints figures; it is not a pass/fail test.

Everything runs in one process against one Temporal dev server started here: the real Vigil worker
(`worker.build_worker`), the real API served by uvicorn on a free 127.0.0.1 port, and senders that speak
real HTTP (one httpx client per concurrent sender). The baselines use the same server, the same Temporal
client and the same concurrency, with a trivial workflow (bench/workflows.py) and no Vigil code.

    .venv/bin/python -m bench.ingest             # full size, fresh SQLite in a temp dir
    .venv/bin/python -m bench.ingest --quick     # everything 10x smaller (smoke run)
    .venv/bin/python -m bench.ingest --database-url postgresql+psycopg://postgres@127.0.0.1:5432/vigil_bench
                                                 # PostgreSQL: that database is WIPED first

Run order (baselines bracket the measurement they are compared with, to limit noise on a shared machine):
warm-up, (b) baseline, (a) storm, settle, (b) baseline, (c) bare starts, (c) Vigil incidents, settle,
(c) bare starts, then (c') bare update-with-start (a diagnostic without a target). Ratios use the mean of
the two bracketing baseline runs. Results and how to read them: docs/benchmarks.md.
"""


from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from bench.stack import (  # noqa: F401 - migrate_fresh: bench/heartbeats.py imports it from here
    BASELINE_TASK_QUEUE,
    SETTLE_TIMEOUT_S,
    Call,
    Load,
    Stack,
    StackOptions,
    http_senders,
    load_line,
    machine_line,
    measure_bare_starts,
    measure_signal_with_start,
    migrate_fresh,
    pagerduty_trigger,
    post,
    progress,
    run_concurrently,
    settle_projections,
    temporal_call,
    vigil_stack,
    warm_up,
)
from bench.storm import StormCheck, StormSpec, check_storm, measure_storm
from bench.workflows import BaselineWorkflow
from vigil.models import AlertRow

TARGET_STORM_RATIO = 10.0
TARGET_CREATE_RATIO = 0.7


# --- configuration and results ----------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    alerts: int = 20_000
    fingerprints: int = 200
    groups: int = 10
    alerts_per_request: int = 1
    signals: int = 2_000
    signal_workflows: int = 10
    incidents: int = 300
    concurrency: int = 32
    database_url: str | None = None
    log_level: str = "INFO"
    log_file: Path | None = None
    seed: int = 1
    single_process: bool = False  # API and worker inside the bench process, instead of their own processes

    def scaled(self, factor: int) -> BenchConfig:
        """--quick: every workload divided by `factor` (structure kept: same fingerprints and groups)."""
        return BenchConfig(
            **{**self.__dict__, "alerts": self.alerts // factor, "signals": self.signals // factor,
               "incidents": max(1, self.incidents // factor)}
        )


    def stack_options(self) -> StackOptions:
        return StackOptions(self.database_url, self.log_level, self.log_file, self.single_process)

    def storm_spec(self) -> StormSpec:
        return StormSpec(self.alerts, self.fingerprints, self.groups, self.alerts_per_request, self.seed)


@dataclass
class CreateCheck:
    """What the DB holds after (c): one alert row and one incident per request."""

    requested: int
    alert_rows: int
    incidents: int
    settle_seconds: float | None

    @property
    def exact(self) -> bool:
        return self.requested == self.alert_rows == self.incidents


@dataclass
class Results:
    config: BenchConfig
    database: str
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    baseline: list[Load] = field(default_factory=list)
    storm: Load | None = None
    storm_check: StormCheck | None = None
    bare_starts: list[Load] = field(default_factory=list)
    bare_update_starts: Load | None = None
    creates: Load | None = None
    create_check: CreateCheck | None = None


# --- (c) new incidents vs bare starts ----------------------------------------------------------------


async def measure_bare_update_with_start(stack: Stack, cfg: BenchConfig, tag: str) -> Load:
    """Diagnostic, not a target: Vigil opens an incident with update-with-start, which (unlike a plain start)
    waits for a worker to run the workflow's first task. This is that cost on the trivial workflow."""

    def attempt(_: int, i: int) -> Awaitable[Call]:
        start = WithStartWorkflowOperation(
            BaselineWorkflow.run, id=f"bench-uws-{tag}-{i}", task_queue=BASELINE_TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        return temporal_call(
            stack.client.execute_update_with_start_workflow(
                BaselineWorkflow.add, f"item-{i}", start_workflow_operation=start
            )
        )

    return await run_concurrently(
        f"(c') bare update-with-start [{tag}]", "starts", list(range(cfg.incidents)), cfg.concurrency, attempt
    )



async def measure_creates(stack: Stack, cfg: BenchConfig) -> Load:
    bodies = [pagerduty_trigger(stack.integration_key, i) for i in range(cfg.incidents)]
    headers = {"Content-Type": "application/json"}
    async with http_senders(stack.base_url, cfg.concurrency) as https:
        return await run_concurrently(
            "(c) Vigil new incidents (/v2/enqueue)", "incidents", bodies, cfg.concurrency,
            lambda i, body: post(https[i], "/v2/enqueue", body, headers, 1),
        )


async def check_creates(stack: Stack, cfg: BenchConfig) -> CreateCheck:
    def read() -> tuple[int, list[int]]:
        with stack.sessions() as session:
            rows = session.execute(
                select(AlertRow.incident_number).where(AlertRow.fingerprint.like("new-%"))
            ).scalars().all()
        return len(rows), sorted(set(rows))

    rows, incidents = await asyncio.to_thread(read)
    settle = await settle_projections(stack, incidents, alerts=len(incidents))
    return CreateCheck(cfg.incidents, rows, len(incidents), settle)


# --- the run ---------------------------------------------------------------------------------------------


async def run(cfg: BenchConfig) -> Results:
    database = make_url(cfg.database_url).get_backend_name() if cfg.database_url else "sqlite"
    results = Results(cfg, database, load_before=os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        async with vigil_stack(cfg.stack_options(), Path(tmp)) as stack:
            progress("stack up: Temporal dev server, Vigil worker, API on " + stack.base_url)
            await warm_up(stack, cfg.concurrency)

            results.baseline.append(await measure_signal_with_start(stack, cfg.signals, cfg.signal_workflows, cfg.concurrency, "before"))
            progress(results.baseline[-1].line())
            results.storm, expected, outcomes = await measure_storm(stack, cfg.storm_spec(), cfg.concurrency)
            progress(results.storm.line())
            results.storm_check = await check_storm(stack, cfg.storm_spec(), expected, outcomes)
            settled = _seconds(results.storm_check.settle_seconds)
            progress(f"storm background work settled {settled} after the burst")
            results.baseline.append(await measure_signal_with_start(stack, cfg.signals, cfg.signal_workflows, cfg.concurrency, "after"))
            progress(results.baseline[-1].line())

            results.bare_starts.append(await measure_bare_starts(stack, cfg.incidents, cfg.concurrency, "before"))
            progress(results.bare_starts[-1].line())
            results.creates = await measure_creates(stack, cfg)
            progress(results.creates.line())
            results.create_check = await check_creates(stack, cfg)
            settled = _seconds(results.create_check.settle_seconds)
            progress(f"new incidents settled (first page sent) {settled} after the burst")
            results.bare_starts.append(await measure_bare_starts(stack, cfg.incidents, cfg.concurrency, "after"))
            progress(results.bare_starts[-1].line())
            results.bare_update_starts = await measure_bare_update_with_start(stack, cfg, "diagnostic")
            progress(results.bare_update_starts.line())
            progress(f"emails caught by the SMTP sink: {stack.emails['messages']}")
    results.load_after = os.getloadavg()
    return results


# --- report -------------------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "NOT within %.0f s" % SETTLE_TIMEOUT_S if value is None else f"{value:.1f} s"


def _mean_rate(loads: Sequence[Load]) -> float:
    return sum(load.rate for load in loads) / len(loads)


def _mean_of(loads: Sequence[Load]) -> str:
    return "mean of " + " and ".join(f"{load.rate:,.1f}" for load in loads)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(r: Results) -> str:
    cfg, storm, check, creates, cc = r.config, r.storm, r.storm_check, r.creates, r.create_check
    assert storm and check and creates and cc
    lines = [
        "",
        "== Vigil ingest benchmark ==",
        machine_line(r.database),
        load_line(r.load_before, r.load_after),
        f"load: {cfg.concurrency} concurrent senders; storm {cfg.alerts} alerts over {cfg.fingerprints} "
        f"fingerprints in {cfg.groups} groups, {cfg.alerts_per_request} alert(s) per request; baseline "
        f"{cfg.signals} signals over {cfg.signal_workflows} workflows; "
        f"{cfg.incidents} new incidents / bare starts",
        "vigil: " + ("API and worker inside the bench process (--single-process)" if cfg.single_process
                     else "API (uvicorn api.main:app) and worker (python worker.py) in their own processes"),
        "",
        "-- (a) duplicate storm --",
        storm.line(),
        f"outcomes reported by the API: {dict(check.outcomes)}",
        f"per-fingerprint counts read back (alerts.count): sum {sum(check.counted.values())} of "
        f"{sum(check.expected.values())} sent, {check.alert_rows} rows for {len(check.expected)} "
        f"fingerprints, {len(check.incidents)} incidents -> " + ("exact" if check.exact else "MISMATCH"),
        *(f"  {m}" for m in check.mismatches()),
        "workflow history events per incident: "
        + ", ".join(f"INC-{n}: {e}" for n, e in check.history_events.items()),
        "alerts known to each workflow (state query): "
        + ", ".join(f"INC-{n}: {k}" for n, k in check.workflow_alerts.items()),
        "",
        "-- (b) bare signal-with-start --",
        *(load.line() for load in r.baseline),
        "",
        "-- (c) new incidents --",
        *(load.line() for load in r.bare_starts),
        creates.line(),
        f"read back: {cc.alert_rows} alert rows in {cc.incidents} incidents for {cc.requested} requests -> "
        + ("exact" if cc.exact else "MISMATCH"),
        f"first page of every new incident sent {_seconds(cc.settle_seconds)} after the burst ended",
        *([r.bare_update_starts.line() + "  <- diagnostic, no target"] if r.bare_update_starts else []),
    ]
    baseline, bare = _mean_rate(r.baseline), _mean_rate(r.bare_starts)
    storm_ratio = storm.rate / baseline if baseline else float("nan")
    create_ratio = creates.rate / bare if bare else float("nan")
    lost = check.lost + storm.never_accepted + creates.never_accepted + max(0, cc.requested - cc.alert_rows)
    double = check.double_counted + max(0, cc.alert_rows - cc.requested)
    exact = lost == 0 and double == 0 and check.exact and cc.exact
    latency = f"{storm.percentile_ms(0.5):.1f} / {storm.percentile_ms(0.99):.1f} ms"
    rows = [
        ("(a) storm: accepted alerts/s", f"{storm.rate:,.1f}", "", ""),
        ("    request latency p50 / p99", latency, "", ""),
        ("(b) bare signal-with-start: signals/s", f"{baseline:,.1f}", _mean_of(r.baseline), ""),
        ("(a) / (b)", f"{storm_ratio:.2f}x", f">= {TARGET_STORM_RATIO:g}x",
         _verdict(storm_ratio >= TARGET_STORM_RATIO)),
        ("(c) Vigil new incidents/s", f"{creates.rate:,.1f}", "", ""),
        ("    bare workflow starts/s", f"{bare:,.1f}", _mean_of(r.bare_starts), ""),
        ("(c) / bare starts", f"{create_ratio:.2f}x", f">= {TARGET_CREATE_RATIO:g}x",
         _verdict(create_ratio >= TARGET_CREATE_RATIO)),
        ("lost / double-counted alerts", f"{lost} / {double}", "0 / 0", _verdict(exact)),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines += ["", "== Summary =="]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> BenchConfig:
    d = BenchConfig()
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="scale every workload down 10x (smoke run)")
    p.add_argument("--concurrency", type=int, default=d.concurrency,
                   help="concurrent senders (default %(default)s)")
    p.add_argument("--alerts-per-request", type=int, default=d.alerts_per_request,
                   help="alerts per Alertmanager webhook in the storm (default %(default)s)")
    p.add_argument("--alerts", type=int, default=d.alerts, help="storm size (default %(default)s)")
    p.add_argument("--fingerprints", type=int, default=d.fingerprints, help="(default %(default)s)")
    p.add_argument("--groups", type=int, default=d.groups, help="(default %(default)s)")
    p.add_argument("--signals", type=int, default=d.signals,
                   help="baseline signal-with-starts (default %(default)s)")
    p.add_argument("--signal-workflows", type=int, default=d.signal_workflows, help="(default %(default)s)")
    p.add_argument("--incidents", type=int, default=d.incidents,
                   help="new incidents and bare starts (default %(default)s)")
    p.add_argument("--database-url", default=None,
                   help="application DB (default: fresh SQLite in a temp dir). THE DATABASE IS WIPED FIRST.")
    p.add_argument("--log-level", default=d.log_level,
                   help="Vigil's log level; the JSON log goes to a file (default %(default)s)")
    p.add_argument("--log-file", type=Path, default=None, help="keep Vigil's log here (default: temp dir)")
    p.add_argument("--single-process", action="store_true",
                   help="run Vigil's API and worker inside the bench process (default: their own processes)")
    p.add_argument("--seed", type=int, default=d.seed, help="shuffle seed (default %(default)s)")
    a = p.parse_args(argv)
    if a.fingerprints % a.groups:
        p.error("--fingerprints must be a multiple of --groups")
    cfg = BenchConfig(
        alerts=a.alerts, fingerprints=a.fingerprints, groups=a.groups,
        alerts_per_request=a.alerts_per_request,
        signals=a.signals, signal_workflows=a.signal_workflows, incidents=a.incidents,
        concurrency=a.concurrency, database_url=a.database_url, log_level=a.log_level, log_file=a.log_file,
        seed=a.seed, single_process=a.single_process,
    )
    return cfg.scaled(10) if a.quick else cfg


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_args(argv)
    if cfg.database_url:
        print(f"WARNING: {make_url(cfg.database_url).render_as_string(hide_password=True)} will be WIPED "
              "(all Vigil tables dropped and re-created).", file=sys.stderr, flush=True)
    progress(f"started {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    print(report(asyncio.run(run(cfg))), flush=True)


if __name__ == "__main__":
    main()
