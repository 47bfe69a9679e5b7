"""`vigil-deploy`: the replay gate (`check`) and history export (`export`) for worker deployments."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from client.connection import connect
from deploy import gate
from vigil.settings import TemporalSettings
from worker import WORKFLOWS


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
    for failure in report.failures:
        click.echo(f"BREAKS {failure.workflow_id} ({failure.workflow_type}, run {failure.run_id}): "
                   f"{failure.first_divergence}", err=True)
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


if __name__ == "__main__":
    cli()
