"""Layered schedules through the admin API (real HTTP, real DB): daily/hourly layers, restrictions, the layer that
decided, overrides on top, edits, validation; and the migration that turns each weekly schedule into one layer."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from tests.conftest import ROOT, Keys
from tests.test_api import assert_error
from vigil.db import session_factory
from vigil.models import Schedule
from vigil.oncall import oncall_in_layers
from vigil.schedules import layers_of


def fields(error: dict) -> dict[str, str]:
    return {d["field"]: d["message"] for d in error["details"]}


async def call(api: httpx.AsyncClient, keys: Keys, method: str, path: str, body: object = None,
               status: int = 200) -> dict:
    resp = await api.request(method, f"/api/v1/{path}", json=body, headers=keys.auth(keys.admin))
    assert resp.status_code == status, resp.text
    return resp.json() if resp.content else {}


async def user(api: httpx.AsyncClient, keys: Keys, name: str) -> int:
    body = {"name": name, "email": f"{name.lower()}-{uuid.uuid4().hex[:6]}@example.com"}
    return (await call(api, keys, "POST", "users", body, 201))["id"]


async def oncall(api: httpx.AsyncClient, keys: Keys, schedule: int, at: str) -> dict:
    resp = await api.get(f"/api/v1/schedules/{schedule}/oncall", params={"at": at}, headers=keys.auth(keys.viewer))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_layers_decide_where_they_have_someone_and_overrides_win(api: httpx.AsyncClient, keys: Keys) -> None:
    alice, bob, carol, dave = [await user(api, keys, n) for n in ("Alice", "Bob", "Carol", "Dave")]
    schedule = await call(api, keys, "POST", "schedules", {
        "name": "primary", "timezone": "Europe/Paris",
        "layers": [
            {"name": "nights", "kind": "daily", "handoff_time": "09:00", "rotation_start": "2026-03-27",
             "participants": [alice, bob]},
            {"name": "office hours", "kind": "weekly", "rotation_start": "2026-03-23", "participants": [carol],
             "restriction": {"weekdays": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}},
        ],
    }, 201)
    sid = schedule["id"]
    assert [(layer["position"], layer["name"], layer["kind"]) for layer in schedule["layers"]] == [
        (0, "nights", "daily"), (1, "office hours", "weekly")]
    assert (schedule["rotation_start"], schedule["participants"]) == ("2026-03-27", [alice, bob])  # the base layer's

    # Friday 2026-03-27 10:00 CET: office hours decide.
    friday = await oncall(api, keys, sid, "2026-03-27T09:00:00Z")
    assert (friday["user"]["id"], friday["source"]) == (carol, "rotation")
    assert friday["layer"] == {"id": schedule["layers"][1]["id"], "position": 1, "name": "office hours"}
    assert friday["next_handoff"] == "2026-03-27T16:00:00Z"  # 17:00 CET: falls through to the base layer
    evening = await oncall(api, keys, sid, "2026-03-27T16:00:00Z")
    assert (evening["user"]["id"], evening["layer"]["name"]) == (alice, "nights")
    # Sunday 2026-03-29 is the spring-forward day: the daily handoff stays at 09:00 local, now 07:00 UTC.
    assert (await oncall(api, keys, sid, "2026-03-29T06:59:59Z"))["user"]["id"] == bob
    assert (await oncall(api, keys, sid, "2026-03-29T07:00:00Z"))["user"]["id"] == alice

    await call(api, keys, "POST", f"schedules/{sid}/overrides",
               {"user_id": dave, "starts_at": "2026-03-27T10:00:00Z", "ends_at": "2026-03-27T11:00:00Z"}, 201)
    covered = await oncall(api, keys, sid, "2026-03-27T10:30:00Z")
    assert (covered["user"]["id"], covered["source"], covered["layer"]) == (dave, "override", None)

    # Layers replace as a whole; the flat fields edit the base layer.
    edited = await call(api, keys, "PATCH", f"schedules/{sid}", {"layers": [
        {"kind": "hourly", "every": 12, "handoff_time": "08:00", "rotation_start": "2026-03-27", "participants": [bob, carol]},
    ]})
    assert [(layer["kind"], layer["every"], layer["participants"]) for layer in edited["layers"]] == [
        ("hourly", 12, [bob, carol])]
    assert (await oncall(api, keys, sid, "2026-03-27T19:00:00Z"))["user"]["id"] == carol  # 08:00 CET + 12 h
    edited = await call(api, keys, "PATCH", f"schedules/{sid}", {"participants": [dave]})
    assert edited["layers"][0]["participants"] == [dave] and edited["layers"][0]["kind"] == "hourly"


async def test_layer_bodies_are_validated(api: httpx.AsyncClient, keys: Keys) -> None:
    alice = await user(api, keys, "Alice")
    layer = {"rotation_start": "2026-01-05", "participants": [alice]}
    err = assert_error(await api.post("/api/v1/schedules", headers=keys.auth(keys.admin), json={
        "name": "x", "timezone": "UTC", "layers": [layer], "rotation_start": "2026-01-05"}), 422, "validation_error")
    assert "not both" in fields(err)["body"]
    err = assert_error(await api.post("/api/v1/schedules", headers=keys.auth(keys.admin), json={
        "name": "x", "timezone": "UTC"}), 422, "validation_error")
    assert "rotation_start" in fields(err)["body"]
    bad = [
        {**layer, "kind": "monthly"},
        {**layer, "every": 0},
        {**layer, "restriction": {"start": "09:00"}},
        {**layer, "restriction": {"weekdays": [7]}},
        {**layer, "restriction": {}},
    ]
    err = assert_error(await api.post("/api/v1/schedules", headers=keys.auth(keys.admin), json={
        "name": "x", "timezone": "UTC", "layers": bad}), 422, "validation_error")
    assert {f.split(".")[2] for f in fields(err)} == {"0", "1", "2", "3", "4"}
    err = assert_error(await api.post("/api/v1/schedules", headers=keys.auth(keys.admin), json={
        "name": "x", "timezone": "UTC", "layers": [layer, {**layer, "participants": [alice, 919191]}]}),
        422, "validation_error")
    assert fields(err) == {"body.layers.1.participants.1": "user 919191 does not exist"}
    err = assert_error(await api.post("/api/v1/schedules", headers=keys.auth(keys.admin), json={
        "name": "x", "timezone": "UTC", "layers": []}), 422, "validation_error")
    sid = (await call(api, keys, "POST", "schedules", {"name": "x", "timezone": "UTC", "layers": [layer]}, 201))["id"]
    for body in ({"layers": None}, {"layers": [layer], "participants": [alice]}, {"layers": []}):
        assert_error(await api.patch(f"/api/v1/schedules/{sid}", headers=keys.auth(keys.admin), json=body),
                     422, "validation_error")


# --- the migration -------------------------------------------------------------------------------


@pytest.fixture
def scratch_db(tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (the suite's is at head): a SQLite file, or a PostgreSQL database when the
    suite runs on PostgreSQL."""
    base = os.environ.get("VIGIL_DATABASE_URL")
    if not base or not base.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'migrate.db'}"
        return
    name = f"migrate_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_migration_turns_each_weekly_schedule_into_one_layer_and_back(scratch_db: str) -> None:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", scratch_db)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "0013")
    engine = create_engine(scratch_db)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, email, timezone, role, created_at) VALUES "
                          "(1, 'Alice', 'a@x', 'UTC', 'responder', CURRENT_TIMESTAMP), "
                          "(2, 'Bob', 'b@x', 'UTC', 'responder', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO schedules (id, name, timezone, handoff_weekday, handoff_time, rotation_start, "
                          "created_at) VALUES (7, 'primary', 'America/New_York', 2, '10:30', '2026-03-02', "
                          "CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO schedule_participants (schedule_id, position, user_id) VALUES (7, 0, 2), (7, 1, 1)"))
    command.upgrade(cfg, "0014")
    with engine.connect() as conn:
        [layer] = conn.execute(text("SELECT id, schedule_id, position, kind, every, handoff_weekday, handoff_time, "
                                    "rotation_start, restrict_weekdays FROM schedule_layers")).all()
        assert tuple(layer[1:7]) == (7, 0, "weekly", 1, 2, "10:30")
        assert str(layer.rotation_start) == "2026-03-02" and layer.restrict_weekdays is None
        turns = conn.execute(text("SELECT layer_id, user_id FROM schedule_participants ORDER BY position")).all()
        assert [tuple(t) for t in turns] == [(layer.id, 2), (layer.id, 1)]
    assert "handoff_weekday" not in {c["name"] for c in inspect(engine).get_columns("schedules")}

    # The upgraded schedule answers as before: Bob from the start day at 10:30 New York time.
    with session_factory(engine)() as session:
        found = oncall_in_layers(layers_of(session.get(Schedule, 7)), [], datetime(2026, 3, 2, 15, 30, tzinfo=UTC))
        assert found is not None and found.user_id == 2 and found.layer == 0

    command.downgrade(cfg, "0013")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT handoff_weekday, handoff_time, rotation_start FROM schedules")).one()
        assert (row[0], row[1], str(row[2])) == (2, "10:30", str(date(2026, 3, 2)))
        assert "schedule_layers" not in inspect(engine).get_table_names()
    engine.dispose()
