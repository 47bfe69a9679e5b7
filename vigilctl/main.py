"""The `vigil` command: incidents, on-call and API keys from the terminal, through Vigil's public HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from pytimeparse import parse as parse_duration

from vigilctl import config, render
from vigilctl.http import Api
from vigilctl.tail import follow

STATUSES = ("triggered", "acknowledged", "resolved", "closed", "ended")
SEVERITIES = ("critical", "high", "warning", "info")


def _read_config(ctx: click.Context, param: click.Parameter, path: Path) -> Path:
    # Eager, so the file's values are in default_map before --url/--key are resolved: click then takes the
    # flag, else the environment variable, else the file, else the built-in default.
    explicit = ctx.get_parameter_source(param.name) is not ParameterSource.DEFAULT
    ctx.default_map = {**(ctx.default_map or {}), **config.load(path, explicit=explicit)}
    return path


json_option = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead of text.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False), envvar=config.CONFIG_ENV,
              default=config.default_path, is_eager=True, expose_value=False, callback=_read_config,
              show_default="~/.config/vigil/config.toml",
              help=f"Config file (TOML: url, api_key); env {config.CONFIG_ENV}.")
@click.option("--url", envvar=config.URL_ENV, default=config.DEFAULT_URL, show_default=True,
              help=f"Vigil's API; env {config.URL_ENV}.")
@click.option("--key", "api_key", envvar=config.KEY_ENV, help=f"Your API key; env {config.KEY_ENV}.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds to wait for each answer.")
@click.version_option(package_name="vigil", prog_name="vigil")
@click.pass_context
def cli(ctx: click.Context, url: str, api_key: str | None, timeout: float) -> None:
    """Vigil from the terminal: incidents, who is on call, your API keys."""
    ctx.obj = Api(url, api_key, timeout)


# --- incidents ------------------------------------------------------------------------------------------------


@cli.command("incidents")
@click.option("--status", "statuses", multiple=True, type=click.Choice((*STATUSES, "open")),
              help="Repeatable; `open` is triggered, acknowledged and resolved.")
@click.option("--service", help="Only this service.")
@click.option("--severity", type=click.Choice(SEVERITIES))
@click.option("--assignee", help="Only incidents this email owns.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@json_option
@click.pass_obj
def incidents(api: Api, statuses: tuple[str, ...], service: str | None, severity: str | None, assignee: str | None,
              limit: int, as_json: bool) -> None:
    """List incidents, newest first."""
    # The API takes several statuses (and `open`) in one request: `?status=triggered&status=acknowledged`.
    page = api.get("/api/v1/incidents", status=list(statuses) or None, service=service, severity=severity,
                   assignee=assignee, limit=limit)
    items, total = page["items"], page["total"]
    if as_json:
        render.as_json({"items": items, "total": total})
    elif items:
        render.incidents(items)
        if total > len(items):
            click.echo(f"({len(items)} of {total}; --limit for more)", err=True)
    else:
        click.echo("no incidents", err=True)


@cli.command("show")
@click.argument("incident")
@json_option
@click.pass_obj
def show(api: Api, incident: str, as_json: bool) -> None:
    """One incident (INC-4 or 4): its state, alerts, timeline and pages."""
    data = api.get(f"/api/v1/incidents/{incident}")
    render.as_json(data) if as_json else render.incident(data)


def _transition(api: Api, incident: str, action: str, body: dict | None, as_json: bool, done: str) -> None:
    data = api.post(f"/api/v1/incidents/{incident}/{action}", body)
    if as_json:
        render.as_json(data)
    else:
        click.echo(f"{data['id']} {done} (now {data['status']})")


@cli.command("ack")
@click.argument("incident")
@click.option("-m", "--message", "note", help="A note for the timeline.")
@json_option
@click.pass_obj
def ack(api: Api, incident: str, note: str | None, as_json: bool) -> None:
    """Acknowledge: stop the escalation. Once this succeeds, no further page starts."""
    _transition(api, incident, "acknowledge", {"note": note} if note else None, as_json, "acknowledged")


@cli.command("resolve")
@click.argument("incident")
@click.option("-m", "--message", "resolution", required=True, help="What fixed it (required).")
@json_option
@click.pass_obj
def resolve(api: Api, incident: str, resolution: str, as_json: bool) -> None:
    """Resolve with a resolution note."""
    _transition(api, incident, "resolve", {"resolution": resolution}, as_json, "resolved")


class Minutes(click.ParamType):
    """A duration such as 30m, 2h or 1h30m (a bare number is minutes), as whole minutes."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        text = str(value).strip()
        seconds = int(text) * 60 if text.isdigit() else parse_duration(text)
        if seconds is None:
            self.fail(f"{value!r} is not a duration like 30m, 2h or 1h30m", param, ctx)
        if seconds <= 0 or seconds % 60:
            self.fail(f"{value!r}: the API snoozes for whole minutes, more than zero", param, ctx)
        return int(seconds) // 60


@cli.command("snooze")
@click.argument("incident")
@click.argument("duration", type=Minutes())
@click.option("-m", "--message", "note", default="", help="A note for the timeline.")
@json_option
@click.pass_obj
def snooze(api: Api, incident: str, duration: int, note: str, as_json: bool) -> None:
    """Keep an acknowledged incident quiet for DURATION (30m, 2h); it re-triggers then unless resolved."""
    _transition(api, incident, "snooze", {"minutes": duration, "note": note}, as_json, f"snoozed for {duration} min")


@cli.command("note")
@click.argument("incident")
@click.option("-m", "--message", "body", required=True, help="The note (required).")
@json_option
@click.pass_obj
def note(api: Api, incident: str, body: str, as_json: bool) -> None:
    """Add a note to the incident's timeline (and to its Jira issue, when synced)."""
    _transition(api, incident, "notes", {"body": body}, as_json, "noted")


@cli.command("close")
@click.argument("incident")
@click.option("-m", "--message", "note", help="A note for the timeline.")
@json_option
@click.pass_obj
def close(api: Api, incident: str, note: str | None, as_json: bool) -> None:
    """Close a resolved incident now, without waiting out the reopen window (refused while a postmortem is owed)."""
    _transition(api, incident, "close", {"note": note} if note else None, as_json, "closed")


class DefaultCommandGroup(click.Group):
    """`vigil postmortem INC-4` shows it; `vigil postmortem complete INC-4` runs the subcommand."""

    default_command = "show"

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = [self.default_command, *args]
        return super().resolve_command(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "INCIDENT [--format md|html|pdf] [-o FILE] | COMMAND [ARGS]...")


@cli.group("postmortem", cls=DefaultCommandGroup)
def postmortem() -> None:
    """An incident's postmortem: show it (`vigil postmortem INC-4`), or complete it."""


@postmortem.command("show")
@click.argument("incident")
@click.option("--format", "fmt", type=click.Choice(("md", "html", "pdf")), default="md", show_default=True,
              help="The rendering.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False, writable=True),
              help="Write it to this file instead of stdout (needed for a PDF on a terminal).")
@json_option
@click.pass_obj
def postmortem_show(api: Api, incident: str, fmt: str, output: Path | None, as_json: bool) -> None:
    """The postmortem as Markdown (default), HTML or PDF, charts included; --json for the document's JSON."""
    path = f"/api/v1/incidents/{incident}/postmortem"
    if as_json:
        render.as_json(api.get(path))
        return
    stdout = click.get_binary_stream("stdout")
    if output is None and fmt == "pdf" and stdout.isatty():
        raise click.UsageError("a PDF is binary: write it to a file with -o FILE (or redirect stdout)")
    data = api.download(path, format=fmt).content
    if output is None:
        stdout.write(data)
        stdout.flush()
        return
    output.write_bytes(data)
    click.echo(f"wrote {output} ({len(data):,} bytes)", err=True)


@postmortem.command("complete")
@click.argument("incident")
@json_option
@click.pass_obj
def postmortem_complete(api: Api, incident: str, as_json: bool) -> None:
    """Sign the postmortem off (summary, root cause and action items must be written); the incident then closes."""
    data = api.post(f"/api/v1/incidents/{incident}/postmortem/complete")
    if as_json:
        render.as_json(data)
    else:
        click.echo(f"{data['id']} postmortem {data['status']}")


@cli.command("tail")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between polls.")
@click.option("--max-events", type=click.IntRange(min=1), help="Stop after this many lines.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def tail(api: Api, interval: float, max_events: int | None, as_json: bool) -> None:
    """Follow new incidents and transitions: one line per new timeline entry. Ctrl-C stops."""
    try:
        for line in follow(api, interval=interval, max_events=max_events, as_json=as_json):
            click.echo(line)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how tail is meant to end: no "Aborted!", exit 0


# --- on-call --------------------------------------------------------------------------------------------------


@cli.command("oncall")
@click.argument("schedule", required=False)
@click.option("--at", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%dT%H:%M%z"]),
              help="When (ISO-8601 with an offset, e.g. 2026-03-09T09:00:00+01:00); default now.")
@json_option
@click.pass_obj
def oncall(api: Api, schedule: str | None, at: datetime | None, as_json: bool) -> None:
    """Who is on call now: on SCHEDULE (an id or a name), or on every schedule.

    With an id this needs any key; a name, or no schedule, lists the schedules, which needs an admin key.
    """
    if schedule is not None and schedule.isdigit():
        targets = [(schedule, int(schedule))]
    else:
        found = api.get("/api/v1/schedules")
        targets = [(s["name"], s["id"]) for s in found if schedule is None or s["name"] == schedule]
        if schedule is not None and not targets:
            known = ", ".join(s["name"] for s in found) or "none"
            raise click.ClickException(f"no schedule named {schedule!r} (known: {known})")
    if not targets and not as_json:
        click.echo("no schedules", err=True)
        return
    stamp = at.isoformat() if at else None
    answers = [(name, api.get(f"/api/v1/schedules/{sid}/oncall", at=stamp)) for name, sid in targets]
    if as_json:
        render.as_json([{"schedule": name, **a} for name, a in answers] if schedule is None else answers[0][1])
        return
    render.table(
        [[name, a["user"]["name"] if a["user"] else "nobody", a["source"] or "-", render.when(a["next_handoff"])]
         for name, a in answers],
        ["SCHEDULE", "ON CALL", "SOURCE", "NEXT HANDOFF"],
    )


# --- keys -----------------------------------------------------------------------------------------------------


@cli.group("keys")
def keys() -> None:
    """Your API keys: list, create, revoke."""


def _key_state(k: dict) -> str:
    if k["revoked_at"]:
        return "revoked"
    if k["expires_at"] and datetime.fromisoformat(k["expires_at"]) <= datetime.now(UTC):
        return "expired"
    return "active"


@keys.command("list")
@json_option
@click.pass_obj
def keys_list(api: Api, as_json: bool) -> None:
    """Your keys, revoked and expired ones included (the key itself is never shown again)."""
    data = api.get("/api/v1/keys")
    if as_json:
        render.as_json(data)
        return
    render.table(
        [[k["id"], k["name"], k["prefix"], _key_state(k), render.when(k["created_at"]), render.when(k["expires_at"]),
          render.when(k["last_used_at"])] for k in data],
        ["ID", "NAME", "PREFIX", "STATE", "CREATED", "EXPIRES", "LAST USED"],
    )


@keys.command("create")
@click.argument("name")
@click.option("--expires-in", type=Minutes(), help="Expire after this long (90d, 12h).")
@json_option
@click.pass_obj
def keys_create(api: Api, name: str, expires_in: int | None, as_json: bool) -> None:
    """A new key with your role; it is printed once, alone on stdout, so `> file` keeps it."""
    expires = datetime.now(UTC) + timedelta(minutes=expires_in) if expires_in else None
    data = api.post("/api/v1/keys", {"name": name, "expires_at": expires.isoformat() if expires else None})
    if as_json:
        render.as_json(data)
        return
    click.echo(data["key"])
    click.echo(f"key {data['id']} ({data['name']}, {data['prefix']}…): shown only now, store it", err=True)


@keys.command("revoke")
@click.argument("key_id", type=click.IntRange(min=1), metavar="ID")
@click.pass_obj
def keys_revoke(api: Api, key_id: int) -> None:
    """Revoke one of your keys (see `vigil keys list` for ids); it gets 401 from now on."""
    api.delete(f"/api/v1/keys/{key_id}")
    click.echo(f"key {key_id} revoked")
