"""`python -m api.serve [uvicorn options]`: the API as `make api`, the image and docker-compose run it.

`uvicorn api.main:app` on VIGIL_API_HOST:VIGIL_API_PORT with VIGIL_API_WORKERS processes; options given here are
passed on to uvicorn (`--proxy-headers`, ...). With several workers uvicorn's parent process keeps them running
(a worker that dies is started again), and the Prometheus counters are kept per process in
PROMETHEUS_MULTIPROC_DIR (a directory of this run's own unless set, emptied at start), so /metrics from any
worker answers the sums over all of them (api/health.py).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import uvicorn.main

from vigil.settings import ApiSettings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir() -> tuple[Path, bool]:
    """The multiprocess metrics directory, empty (the values of a previous run would be added to this one's);
    True when it is this run's own, to be removed at exit. Set before any worker imports prometheus_client."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="vigil-api-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path, True


def main(argv: Sequence[str] | None = None) -> None:
    api = ApiSettings()
    args = ["api.main:app", "--host", api.host, "--port", str(api.port), "--workers", str(api.workers),
            *(sys.argv[1:] if argv is None else argv)]
    own = None
    if api.workers > 1:
        path, mine = metrics_dir()
        own = path if mine else None
    try:
        uvicorn.main.main(args)
    finally:
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)


if __name__ == "__main__":
    main()
