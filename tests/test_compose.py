"""docker-compose.yml stays consistent with the settings, the search attributes and the Dockerfile."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from vigil.search_attributes import SEARCH_ATTRIBUTES
from vigil.settings import TemporalSettings, WorkerSettings, env_names

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"postgresql", "temporal", "temporal-ui", "temporal-setup", "migrate", "api", "worker"}


def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def environment(service: dict[str, Any]) -> dict[str, Any]:
    """A service's environment as a dict, whichever of the two compose forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return env


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def test_services_exist() -> None:
    assert SERVICES <= services().keys()


def test_published_ports() -> None:
    published = {
        str(port).rsplit(":", 1)[0].split(":")[-1]
        for service in services().values()
        for port in service.get("ports", [])
    }
    assert {"7233", "8233", "8000"} <= published


def test_every_vigil_env_var_is_a_setting() -> None:
    known = env_names()
    for name, service in services().items():
        unknown = {key for key in environment(service) if key.startswith("VIGIL_")} - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which no settings class reads"


def test_vigil_services_reach_database_and_temporal() -> None:
    svc = services()
    for name in ("api", "worker", "migrate"):
        env = environment(svc[name])
        assert env["VIGIL_DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert "@postgresql:" in env["VIGIL_DATABASE_URL"], name
    for name in ("api", "worker"):
        assert environment(svc[name])["VIGIL_TEMPORAL_ADDRESS"] == "temporal:7233", name


def test_temporal_setup_registers_the_search_attributes() -> None:
    script = command_text(services()["temporal-setup"])
    registered: dict[str, str] = {}
    # One `create` takes a single --type for all its --name flags.
    for create in script.split("search-attribute create")[1:]:
        (kind,) = re.findall(r"--type\s+(\w+)", create)
        registered |= {name: kind for name in re.findall(r"--name\s+(\w+)", create)}
    assert registered == SEARCH_ATTRIBUTES


def test_api_and_worker_build_from_the_dockerfile() -> None:
    assert (ROOT / "Dockerfile").is_file()
    svc = services()
    for name in ("api", "worker", "migrate"):
        build = svc[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context / dockerfile).resolve() == ROOT / "Dockerfile", name
    assert "api.serve" in command_text(svc["api"])  # uvicorn api.main:app with VIGIL_API_WORKERS processes
    assert "worker.py" in command_text(svc["worker"])


def test_worker_grace_period_exceeds_its_graceful_shutdown() -> None:
    worker = services()["worker"]
    graceful = int(
        environment(worker).get(
            "VIGIL_WORKER_GRACEFUL_SHUTDOWN_SECONDS", WorkerSettings().graceful_shutdown_seconds
        )
    )
    grace = worker["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > graceful


def test_the_image_holds_every_runtime_package() -> None:
    """The image copies each package pyproject installs (the dev tools aside): a package left out is a worker or API
    that cannot import it (client/ was, when it was added)."""
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include} - {"devtools"}
    copied = set(re.findall(r"^COPY\s+(\w+)\s+\./\1\s*$", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    assert packages <= copied, f"Dockerfile does not COPY {sorted(packages - copied)}"


def test_temporal_orders_pages_first() -> None:
    """The compose Temporal (auto-setup before 1.31) gets the priority matcher and one write partition for the
    vigil queue from a mounted dynamic config file; without it priority keys are stored and ignored."""
    temporal = services()["temporal"]
    path = environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    mounts = {target.split(":")[0]: source for source, _, target in (v.partition(":") for v in temporal["volumes"])}
    source = mounts[f"/etc/temporal/{path}"]
    config = yaml.safe_load((ROOT / source).read_text())
    assert config["matching.useNewMatcher"] == [{"value": True}]
    assert config["matching.numTaskqueueWritePartitions"] == [
        {"value": 1, "constraints": {"taskQueueName": TemporalSettings.model_fields["task_queue"].default}}
    ]
