"""`vigil`, the CLI, run as a person runs it: the installed script against the live app over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Keys, free_port
from tests.flows import trigger
from tests.helpers import eventually

VIGIL = Path(sys.executable).parent / "vigil"
DEADLINE = 60


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def env(live_api: str, tmp_path: Path) -> dict[str, str]:
    """The live app's URL and nothing of this machine's user: no key, no config file."""
    return {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "LANG": "C.UTF-8", "TZ": "UTC", "VIGIL_PUBLIC_URL": live_api,
    }


@pytest.fixture
async def http(live_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_api, timeout=60) as client:
        yield client


async def vigil(env: dict[str, str], *args: str, key: str | None = None) -> Run:
    """Run the installed `vigil` to completion (the event loop keeps serving the live app meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        str(VIGIL), *args, env={**env, **({"VIGIL_API_KEY": key} if key else {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
    run = Run(proc.returncode or 0, out.decode(), err.decode())
    assert "Traceback" not in run.err, run.err
    return run


async def api_message(http: httpx.AsyncClient, method: str, path: str, key: str, **kw: object) -> str:
    """The message the API itself gives for this call, which the CLI must repeat."""
    headers = {"Authorization": f"Bearer {key}"}
    resp = await http.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]
    assert resp.is_error, resp.text
    return resp.json()["error"]["message"]


async def test_list_show_ack_note_snooze_resolve(
    env: dict, http: httpx.AsyncClient, keys: Keys, worker: None
) -> None:
    checkout = await trigger(http, keys, "cli-checkout")
    payments = await trigger(http, keys, "cli-payments", component="payments", klass="Latency", severity="warning",
                             summary="Slow payments")

    listed = await vigil(env, "incidents", key=keys.viewer)
    assert listed.code == 0, listed.err
    assert listed.out.splitlines()[0].split() == ["ID", "STATUS", "SEVERITY", "SERVICE", "TITLE", "CREATED"]
    rows = {line.split()[0]: line.split() for line in listed.out.splitlines()[1:]}
    assert rows[f"INC-{checkout}"][1:4] == ["triggered", "critical", "checkout"]
    assert rows[f"INC-{payments}"][1:4] == ["triggered", "warning", "payments"]

    only = await vigil(env, "incidents", "--service", "payments", "--severity", "warning", key=keys.viewer)
    assert [line.split()[0] for line in only.out.splitlines()[1:]] == [f"INC-{payments}"]
    none = await vigil(env, "incidents", "--status", "acknowledged", key=keys.viewer)
    assert (none.code, none.out, none.err.strip()) == (0, "", "no incidents")

    acked = await vigil(env, "ack", f"INC-{checkout}", "-m", "looking", key=keys.responder)
    assert (acked.code, acked.out.strip()) == (0, f"INC-{checkout} acknowledged (now acknowledged)"), acked.err

    async def acked_listed() -> bool:  # the list reads the projection, which follows the workflow shortly
        acked_only = await vigil(env, "incidents", "--status", "acknowledged", key=keys.viewer)
        return [line.split()[0] for line in acked_only.out.splitlines()[1:]] == [f"INC-{checkout}"]

    await eventually(acked_listed, timeout=30)
    both = json.loads((await vigil(env, "incidents", "--status", "open", "--json", key=keys.viewer)).out)
    assert {(i["id"], i["status"]) for i in both["items"]} == {
        (f"INC-{checkout}", "acknowledged"), (f"INC-{payments}", "triggered")
    }
    assert both["total"] == 2

    noted = await vigil(env, "note", str(checkout), "-m", "rolled back build 42", key=keys.responder)
    assert (noted.code, noted.out.strip()) == (0, f"INC-{checkout} noted (now acknowledged)"), noted.err
    snoozed = await vigil(env, "snooze", f"INC-{checkout}", "1h30m", "-m", "waiting for the deploy",
                          key=keys.responder)
    assert snoozed.out.strip() == f"INC-{checkout} snoozed for 90 min (now acknowledged)", snoozed.err
    resolved = await vigil(env, "resolve", f"INC-{checkout}", "-m", "Rolled back the bad deploy", key=keys.responder)
    assert resolved.out.strip() == f"INC-{checkout} resolved (now resolved)", resolved.err

    async def shown() -> Run:
        run = await vigil(env, "show", f"INC-{checkout}", key=keys.viewer)
        assert "Rolled back the bad deploy" in run.out.split("Timeline")[1]  # the projection has caught up
        return run

    shown_run = await eventually(shown, timeout=30)
    head, timeline = shown_run.out.split("\nTimeline")
    assert head.splitlines()[:2] == [f"INC-{checkout}  resolved  critical  checkout", "High error rate on checkout"]
    # The actor as people read it (the API's resolved_by_name), not the recorded label `user:rita@test`.
    assert "resolution:   Rolled back the bad deploy" in head and "by rita@test" in head
    kinds = [line.split()[3] for line in timeline.split("\nNotifications")[0].splitlines()[1:]]
    assert {"triggered", "acknowledged", "note", "snoozed", "resolved"} <= set(kinds), kinds
    assert "user:rita@test: rolled back build 42" in timeline

    detail = json.loads((await vigil(env, "show", f"INC-{checkout}", "--json", key=keys.viewer)).out)
    assert detail["status"] == "resolved" and detail["resolution"] == "Rolled back the bad deploy"

    # The state machine's refusal reaches the terminal as the API words it.
    again = await vigil(env, "resolve", f"INC-{checkout}", "-m", "again", key=keys.responder)
    message = await api_message(http, "POST", f"/api/v1/incidents/INC-{checkout}/resolve", keys.responder,
                                json={"resolution": "again"})
    assert again.code == 1 and again.out == ""
    assert again.err.strip() == f"Error: {message} (HTTP 409 invalid_transition)"


async def test_errors_exit_non_zero_with_the_apis_message(env: dict, http: httpx.AsyncClient, keys: Keys) -> None:
    bad_key = await vigil(env, "incidents", key="vgl_not_a_key")
    assert bad_key.code == 1 and bad_key.out == ""
    assert await api_message(http, "GET", "/api/v1/incidents", "vgl_not_a_key") in bad_key.err
    assert "HTTP 401 unauthorized" in bad_key.err

    unknown = await vigil(env, "show", "INC-987654", key=keys.viewer)
    assert unknown.code == 1
    assert unknown.err.strip() == (
        f"Error: {await api_message(http, 'GET', '/api/v1/incidents/INC-987654', keys.viewer)} (HTTP 404 not_found)"
    )

    forbidden = await vigil(env, "ack", "INC-987654", key=keys.viewer)
    assert forbidden.code == 1 and "HTTP 403 forbidden" in forbidden.err

    too_long = await vigil(env, "snooze", "INC-987654", "8d", key=keys.responder)  # over the API's 7-day cap
    assert too_long.code == 1 and "HTTP 422 validation_error" in too_long.err and "body.minutes" in too_long.err

    down = await vigil({**env, "VIGIL_PUBLIC_URL": f"http://127.0.0.1:{free_port()}"}, "incidents", key=keys.viewer)
    assert down.code == 3 and down.err.startswith("Error: cannot reach Vigil at http://127.0.0.1:")

    no_key = await vigil(env, "incidents")
    assert no_key.code == 2 and "no API key: set VIGIL_API_KEY" in no_key.err

    no_resolution = await vigil(env, "resolve", "INC-1", key=keys.responder)
    assert no_resolution.code == 2 and "Missing option '-m'" in no_resolution.err

    not_minutes = await vigil(env, "snooze", "INC-1", "90s", key=keys.responder)
    assert not_minutes.code == 2 and "whole minutes" in not_minutes.err


async def test_config_file_then_environment_then_flags(env: dict, keys: Keys, tmp_path: Path) -> None:
    bare = {k: v for k, v in env.items() if k != "VIGIL_PUBLIC_URL"}
    default_file = Path(env["XDG_CONFIG_HOME"]) / "vigil" / "config.toml"
    default_file.parent.mkdir(parents=True)
    default_file.write_text(f'url = "{env["VIGIL_PUBLIC_URL"]}"\napi_key = "{keys.viewer}"\n')
    assert (await vigil(bare, "incidents")).code == 0  # both from ~/.config/vigil/config.toml

    named = tmp_path / "other.toml"
    named.write_text(f'url = "http://127.0.0.1:{free_port()}"\napi_key = "{keys.viewer}"\n')
    assert (await vigil({**bare, "VIGIL_CONFIG": str(named)}, "incidents")).code == 3  # VIGIL_CONFIG picks the file
    assert (await vigil({**bare, "VIGIL_CONFIG": str(named)}, "incidents", key="vgl_wrong")).code == 3
    # The environment beats the file, and a flag beats the environment.
    assert (await vigil(env, "incidents", key="vgl_wrong")).code == 1
    assert (await vigil(env, "--key", keys.viewer, "incidents", key="vgl_wrong")).code == 0
    assert (await vigil({**env, "VIGIL_CONFIG": str(named)}, "incidents")).code == 0

    missing = await vigil({**bare, "VIGIL_CONFIG": str(tmp_path / "none.toml")}, "incidents")
    assert missing.code == 2 and "none.toml does not exist" in missing.err
    named.write_text('url = "http://x"\ntoken = "k"\n')
    unknown = await vigil(bare, "--config", str(named), "incidents")
    assert unknown.code == 2 and "unknown setting token" in unknown.err


async def test_keys_create_list_revoke(env: dict, http: httpx.AsyncClient, keys: Keys) -> None:
    created = await vigil(env, "keys", "create", "laptop", "--expires-in", "90d", key=keys.responder)
    assert created.code == 0, created.err
    new_key = created.out.strip()
    assert len(created.out.splitlines()) == 1 and "shown only now" in created.err
    assert (await vigil(env, "incidents", key=new_key)).code == 0

    listed = await vigil(env, "keys", "list", key=new_key)
    laptop = next(line.split() for line in listed.out.splitlines() if " laptop " in line)
    assert laptop[3] == "active" and new_key.startswith(laptop[2].rstrip("…"))
    key_id = next(k["id"] for k in json.loads((await vigil(env, "keys", "list", "--json", key=new_key)).out)
                  if k["name"] == "laptop")

    revoked = await vigil(env, "keys", "revoke", str(key_id), key=keys.responder)
    assert (revoked.code, revoked.out.strip()) == (0, f"key {key_id} revoked")
    refused = await vigil(env, "incidents", key=new_key)
    assert refused.code == 1 and await api_message(http, "GET", "/api/v1/incidents", new_key) in refused.err
    after = await vigil(env, "keys", "list", key=keys.responder)
    assert next(line.split() for line in after.out.splitlines() if " laptop " in line)[3] == "revoked"


async def test_oncall(env: dict, http: httpx.AsyncClient, keys: Keys) -> None:
    empty = await vigil(env, "oncall", key=keys.admin)
    assert (empty.code, empty.out, empty.err.strip()) == (0, "", "no schedules")
    admin = keys.auth(keys.admin)
    alice = (await http.post("/api/v1/users", headers=admin, json={
        "name": "Alice", "email": "alice@example.com", "phone": "+14155550100", "timezone": "Europe/Paris"})).json()
    schedule = (await http.post("/api/v1/schedules", headers=admin, json={
        "name": "primary", "timezone": "Europe/Paris", "handoff_weekday": 0, "handoff_time": "10:00",
        "rotation_start": "2026-01-05", "participants": [alice["id"]]})).json()

    # A responder or viewer needs to know who is on call; the id is enough for that.
    by_id = await vigil(env, "oncall", str(schedule["id"]), key=keys.viewer)
    assert by_id.code == 0, by_id.err
    assert by_id.out.splitlines()[1].split()[:3] == [str(schedule["id"]), "Alice", "rotation"]
    at = await vigil(env, "oncall", str(schedule["id"]), "--at", "2025-12-01T09:00:00+00:00", "--json",
                     key=keys.viewer)
    assert json.loads(at.out)["user"] is None  # before the rotation starts

    every = await vigil(env, "oncall", key=keys.admin)
    assert every.out.splitlines()[1].split()[:3] == ["primary", "Alice", "rotation"]
    by_name = json.loads((await vigil(env, "oncall", "primary", "--json", key=keys.admin)).out)
    assert by_name["user"]["name"] == "Alice"
    unknown = await vigil(env, "oncall", "secondary", key=keys.admin)
    assert unknown.code == 1 and "no schedule named 'secondary' (known: primary)" in unknown.err
    # Listing schedules (to find one by name) stays admin-only: the API's 403 says so.
    viewer_by_name = await vigil(env, "oncall", "primary", key=keys.viewer)
    assert viewer_by_name.code == 1 and "HTTP 403 forbidden" in viewer_by_name.err


async def test_tail_follows_new_incidents_and_transitions(env: dict, http: httpx.AsyncClient, keys: Keys,
                                                          worker: None) -> None:
    before = await trigger(http, keys, "tail-before")

    async def opened() -> bool:  # projected before tail starts, so it belongs to the past tail skips
        resp = await http.get(f"/api/v1/incidents/{before}", headers=keys.auth(keys.viewer))
        return any(e["kind"] == "triggered" for e in resp.json()["timeline"])

    await eventually(opened, timeout=30)
    proc = await asyncio.create_subprocess_exec(
        str(VIGIL), "tail", "--interval", "0.2", env={**env, "VIGIL_API_KEY": keys.viewer},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        started = await asyncio.wait_for(proc.stderr.readline(), DEADLINE)
        assert started.decode().startswith("vigil tail: following"), started

        number = await trigger(http, keys, "tail-after", component="search", klass="Down")
        lines: list[str] = []

        async def seen(kind: str, incident: int) -> bool:
            assert proc.stdout is not None
            while not any(f"INC-{incident}  {kind}" in line for line in lines):
                lines.append((await asyncio.wait_for(proc.stdout.readline(), DEADLINE)).decode())
            return True

        await seen("triggered", number)
        assert (await vigil(env, "ack", str(number), "-m", "on it", key=keys.responder)).code == 0
        await seen("acknowledged", number)
        assert (await vigil(env, "ack", str(before), key=keys.responder)).code == 0
        await seen("acknowledged", before)
        # What existed before tail started is not replayed; each entry is shown once.
        assert not any(f"INC-{before}  triggered" in line for line in lines)
        assert sum(f"INC-{number}  triggered" in line for line in lines) == 1
        assert any(line.rstrip().endswith("user:rita@test: on it") for line in lines)

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        code = await asyncio.wait_for(proc.wait(), DEADLINE)
        rest = (await proc.stderr.read()).decode()
        assert code == 0 and "Traceback" not in rest and "Aborted" not in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_tail_stops_after_max_events(env: dict, http: httpx.AsyncClient, keys: Keys, worker: None) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(VIGIL), "tail", "--interval", "0.2", "--max-events", "2", "--json",
        env={**env, "VIGIL_API_KEY": keys.viewer},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    await asyncio.wait_for(proc.stderr.readline(), DEADLINE)
    number = await trigger(http, keys, "tail-bounded")
    out, err = await asyncio.wait_for(proc.communicate(), DEADLINE)  # ends by itself after two lines
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert proc.returncode == 0 and len(events) == 2, err
    assert events[0]["incident"] == f"INC-{number}" and events[0]["kind"] == "triggered"
    assert set(events[0]) >= {"seq", "at", "kind", "actor", "message"}
