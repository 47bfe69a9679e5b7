"""`vigil-deploy`: the replay gate (`check`), history export (`export`), and promote, ramp, rollback of versions."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
from temporalio.client import Client

from client.connection import connect
from deploy import gate, versions
from vigil.build import build_id
from vigil.settings import TemporalSettings, WorkerSettings
from worker import WORKFLOWS

T = TypeVar("T")


def _settings(address: str | None, namespace: str | None) -> TemporalSettings:
    settings = TemporalSettings()
    update = {k: v for k, v in (("address", address), ("namespace", namespace)) if v}
    return settings.model_copy(update=update)


@click.group()
@click.option("--address", envvar="VIGIL_TEMPORAL_ADDRESS", help="Temporal frontend (default: VIGIL_TEMPORAL_ADDRESS).")
@click.option("--namespace", envvar="VIGIL_TEMPORAL_NAMESPACE", help="Namespace (default: VIGIL_TEMPORAL_NAMESPACE).")
@click.pass_context
def cli(ctx: click.Context, address: str | None, namespace: str | None) -> None:
    """Check this build against the live histories before promoting it."""
    ctx.obj = _settings(address, namespace)


@cli.command()
@click.option("--task-queue", default=None, help="Only workflows of this task queue (default: all).")
@click.option("--closed", default=20, show_default=True, help="Also replay this many recently closed workflows.")
@click.pass_obj
def check(settings: TemporalSettings, task_queue: str | None, closed: int) -> None:
    """Replay every running workflow against this build; exit 1 naming each one that would break."""
    report = asyncio.run(_check(settings, task_queue, closed))
    click.echo(f"replayed {report.replayed} workflow(s): fetch {report.fetch_seconds:.2f}s, "
               f"replay {report.replay_seconds:.2f}s")
    _print_failures(report)
    if not report.ok:
        click.echo(f"{len(report.failures)} workflow(s) would break: do not promote this build", err=True)
        sys.exit(1)
    click.echo("ok: every replayed workflow replays on this build")


async def _check(settings: TemporalSettings, task_queue: str | None, closed: int) -> gate.Report:
    client = await connect(settings)
    return await gate.check(client, WORKFLOWS, task_queue=task_queue, closed=closed)


@cli.command()
@click.argument("workflow_id")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--run-id", default=None)
@click.pass_obj
def export(settings: TemporalSettings, workflow_id: str, path: Path, run_id: str | None) -> None:
    """Write WORKFLOW_ID's history to PATH (e.g. tests/histories/<name>.json, replayed by the suite)."""
    events = asyncio.run(_export(settings, workflow_id, path, run_id))
    click.echo(f"{workflow_id}: {events} events written to {path}")


async def _export(settings: TemporalSettings, workflow_id: str, path: Path, run_id: str | None) -> int:
    return await gate.export(await connect(settings), workflow_id, path, run_id)


def _this_build(build: str | None) -> str:
    return build or build_id(WorkerSettings().build_id)


DEPLOYMENT = click.option(
    "--deployment", default=lambda: WorkerSettings().deployment_name,
    help="Worker Deployment name (default: VIGIL_WORKER_DEPLOYMENT_NAME, vigil).",
)
TASK_QUEUE = click.option("--task-queue", default=None, help="Replay only workflows of this task queue (default: all).")
BUILD = click.option("--build-id", default=None, help="Default: this build's (VIGIL_WORKER_BUILD_ID, else version+commit).")


@cli.command()
@DEPLOYMENT
@click.pass_obj
def status(settings: TemporalSettings, deployment: str) -> None:
    """Print the current and the ramping version."""
    found = asyncio.run(_run(settings, lambda c: versions.routing(c, deployment)))
    click.echo(f"current: {found.current or '(unversioned)'}")
    if found.ramping:
        click.echo(f"ramping: {found.ramping} at {found.ramp_percentage:g}%")


@cli.command()
@DEPLOYMENT
@BUILD
@TASK_QUEUE
@click.option("--skip-check", is_flag=True, help="Promote without running the replay gate first.")
@click.pass_obj
def promote(
    settings: TemporalSettings, deployment: str, build_id: str | None, task_queue: str | None, skip_check: bool,
) -> None:
    """Run the replay gate, then make this build current (its workers must be polling)."""
    build = _this_build(build_id)

    async def run(client: Client) -> None:
        if not skip_check:
            report = await gate.check(client, WORKFLOWS, task_queue=task_queue, closed=0)
            _print_failures(report)
            if not report.ok:
                click.echo(f"{len(report.failures)} workflow(s) would break: {build} not promoted", err=True)
                sys.exit(1)
        await versions.set_current(client, deployment, build)

    asyncio.run(_run(settings, run))
    click.echo(f"{deployment}/{build} is current")


@cli.command()
@DEPLOYMENT
@BUILD
@click.argument("percentage", type=click.FloatRange(0, 100))
@click.pass_obj
def ramp(settings: TemporalSettings, deployment: str, build_id: str | None, percentage: float) -> None:
    """Send PERCENTAGE of new and auto-upgrading workflows to this build (0 stops the ramp)."""
    build = _this_build(build_id) if percentage else ""
    asyncio.run(_run(settings, lambda c: versions.set_ramping(c, deployment, build, percentage)))
    click.echo(f"{deployment}/{build} ramps at {percentage:g}%" if build else f"{deployment}: no version ramps")


@cli.command()
@DEPLOYMENT
@BUILD
@TASK_QUEUE
@click.pass_obj
def rollback(settings: TemporalSettings, deployment: str, build_id: str | None, task_queue: str | None) -> None:
    """Run from the build to restore: make it current; workflows it cannot replay stay pinned where they run."""
    build = _this_build(build_id)
    result = asyncio.run(_run(settings, lambda c: versions.rollback(c, deployment, build, WORKFLOWS,
                                                                                task_queue=task_queue)))
    for workflow_id, kept in sorted(result.pinned.items()):
        click.echo(f"PINNED {workflow_id} to {kept}: this build cannot replay it; keep {kept}'s workers until it ends")
    click.echo(f"{deployment}/{build} is current")


def _print_failures(report: gate.Report) -> None:
    for failure in report.failures:
        click.echo(f"BREAKS {failure.workflow_id} ({failure.workflow_type}, run {failure.run_id}): "
                   f"{failure.first_divergence}", err=True)


async def _run(settings: TemporalSettings, call: Callable[[Client], Awaitable[T]]) -> T:
    return await call(await connect(settings))


if __name__ == "__main__":
    cli()
