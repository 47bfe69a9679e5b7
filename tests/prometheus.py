"""A real Prometheus (Debian `prometheus`) scraping a test exporter whose values the test sets.

`make test` and `.ci/run` install the package (scripts/ensure-debian-packages.sh). A missing binary fails the
test with what to install; it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.conftest import free_port
from tests.helpers import eventually

PROMETHEUS_BIN = os.environ.get("VIGIL_PROMETHEUS_BIN", "/usr/bin/prometheus")
SCRAPE_INTERVAL = "1s"
STOP_TIMEOUT_SECONDS = 10.0


def prometheus_binary() -> str:
    path = shutil.which(PROMETHEUS_BIN)
    if path is None:
        pytest.fail(
            f"Prometheus binary {PROMETHEUS_BIN} not found: install the Debian package prometheus (`make test` "
            "does it via scripts/ensure-debian-packages.sh; by hand: `sudo apt-get install prometheus`), or set "
            "VIGIL_PROMETHEUS_BIN",
            pytrace=False,
        )
    return path


class Exporter:
    """A prometheus_client registry served over HTTP on 127.0.0.1: `checkout_error_ratio{service="checkout"}`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.error_ratio = Gauge("checkout_error_ratio", "share of failed checkouts", ["service"],
                                 registry=self.registry)
        self.port = free_port()
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    def set(self, value: float) -> None:
        self.error_ratio.labels(service="checkout").set(value)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    rules_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ready(self) -> bool:
        assert self.process.poll() is None, f"prometheus exited with {self.process.returncode}:\n{self.log()}"
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def instant(self, promql: str) -> list[dict]:
        """GET /api/v1/query: the current vector."""
        resp = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        resp.raise_for_status()
        return resp.json()["data"]["result"]

    def scraped(self, value: float) -> bool:
        """Prometheus's latest sample of the exporter's gauge is `value`."""
        return [float(r["value"][1]) for r in self.instant("checkout_error_ratio")] == [value]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def running_prometheus(workdir: Path, exporter_port: int, *, rules: list[dict] | None = None,
                       alertmanager_url: str | None = None) -> Iterator[Prometheus]:
    """Prometheus on a free 127.0.0.1 port scraping the exporter every second, TSDB under `workdir`."""
    binary = prometheus_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    rules_path = workdir / "rules.yml"
    rules_path.write_text(yaml.safe_dump({"groups": [{"name": "test", "interval": SCRAPE_INTERVAL,
                                                      "rules": rules or []}]}))
    config: dict = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(rules_path)],
        "scrape_configs": [{"job_name": "exporter", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
    }
    if alertmanager_url:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_url.split("//")[1]]}]}]}
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url={url}",
            ],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    prom = Prometheus(url=url, process=process, log_path=log_path, rules_path=rules_path)
    try:
        yield prom
    finally:
        prom.stop()


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    exp = Exporter()
    yield exp
    exp.close()


@pytest.fixture
async def prometheus(tmp_path: Path, exporter: Exporter) -> AsyncIterator[Prometheus]:
    """A real Prometheus scraping `exporter`, ready (import this fixture into the test module)."""
    with running_prometheus(tmp_path / "prometheus", exporter.port) as prom:
        await eventually(prom.ready, timeout=30, interval=0.1)
        yield prom
