"""Access: the last admin cannot be removed (and can be recovered), API keys with expiry, last use and an
audit log, and failed authentication is rate limited. Real HTTP through the ASGI app, real DB."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import Keys
from tests.test_api import assert_error
from vigil.bootstrap import create_user_with_key
from vigil.models import ApiKey, User, utcnow
from vigil.security import Role, hash_key

ROOT = Path(__file__).resolve().parent.parent


def me(sessions: sessionmaker[Session], email: str) -> User:
    with sessions() as session:
        return session.scalars(select(User).where(User.email == email)).one()


async def test_the_last_admin_cannot_be_demoted_or_deleted(api: httpx.AsyncClient, keys: Keys, sessions) -> None:
    admin = keys.auth(keys.admin)
    ada = me(sessions, "admin@test")
    err = assert_error(await api.patch(f"/api/v1/users/{ada.id}", json={"role": "viewer"}, headers=admin), 409, "last_admin")
    assert "last admin" in err["message"]
    assert me(sessions, "admin@test").role == "admin"
    # With a second admin, either may step down, but then the other is the last one.
    bea = (await api.post("/api/v1/users", json={"name": "Bea", "email": "bea@test", "role": "admin"}, headers=admin)).json()
    assert (await api.patch(f"/api/v1/users/{ada.id}", json={"role": "responder"}, headers=admin)).status_code == 200
    assert_error(await api.get("/api/v1/users", headers=admin), 403, "forbidden")  # Ada is a responder now
    with sessions.begin() as session:
        bea_key = create_user_with_key(session, name="x", email="x@test", role=Role.viewer)  # a key for Bea below
        session.execute(update(ApiKey).where(ApiKey.key_hash == hash_key(bea_key)).values(user_id=bea["id"]))
    as_bea = {"Authorization": f"Bearer {bea_key}"}
    assert_error(await api.patch(f"/api/v1/users/{bea['id']}", json={"role": "viewer"}, headers=as_bea), 409, "last_admin")
    assert_error(await api.delete(f"/api/v1/users/{bea['id']}", headers=as_bea), 409, "conflict")  # not yourself


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(api: httpx.AsyncClient, keys: Keys, sessions) -> None:
    with sessions.begin() as session:
        other = create_user_with_key(session, name="Bea", email="bea@test", role=Role.admin)
    ada, bea = me(sessions, "admin@test"), me(sessions, "bea@test")
    for _ in range(5):
        results = await asyncio.gather(
            api.patch(f"/api/v1/users/{bea.id}", json={"role": "viewer"}, headers=keys.auth(keys.admin)),
            api.patch(f"/api/v1/users/{ada.id}", json={"role": "viewer"}, headers=keys.auth(other)),
        )
        codes = sorted(r.status_code for r in results)
        assert codes in ([200, 403], [200, 409]), [r.text for r in results]
        with sessions() as session:
            assert session.scalars(select(User.email).where(User.role == "admin")).all() != []
        with sessions.begin() as session:  # both admins again for the next round
            session.execute(update(User).where(User.id.in_([ada.id, bea.id])).values(role="admin"))


async def test_recover_admin_command_repairs_a_locked_out_install(
    api: httpx.AsyncClient, keys: Keys, sessions, database_url: str, tmp_path: Path
) -> None:
    with sessions.begin() as session:  # how installs were locked out before the API refused it
        session.execute(update(User).where(User.role == "admin").values(role="viewer"))
    assert_error(await api.get("/api/v1/users", headers=keys.auth(keys.admin)), 403, "forbidden")
    env = {**os.environ, "VIGIL_DATABASE_URL": database_url, "VIGIL_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "vigil.bootstrap", "--recover-admin", "admin@test"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    key = done.stdout.strip()
    assert key.startswith("vgl_api_") and "\n" not in key
    assert (await api.get("/api/v1/users", headers={"Authorization": f"Bearer {key}"})).status_code == 200
    assert (await api.get("/api/v1/users", headers=keys.auth(keys.admin))).status_code == 200  # the user is admin again
    log = (await api.get("/api/v1/audit-log", params={"action": "admin.recover"}, headers=keys.auth(keys.admin))).json()
    assert len(log) == 1 and log[0]["detail"] == "role viewer -> admin" and log[0]["key_prefix"] == key[:12]


async def test_own_keys_are_shown_once_expire_and_revoke(api: httpx.AsyncClient, keys: Keys, sessions) -> None:
    rita = keys.auth(keys.responder)
    created = await api.post("/api/v1/keys", json={"name": "laptop"}, headers=rita)
    assert created.status_code == 201, created.text
    new = created.json()
    assert new["key"].startswith(new["prefix"]) and new["user_id"] == me(sessions, "rita@test").id
    as_new = {"Authorization": f"Bearer {new['key']}"}
    assert (await api.get("/api/v1/incidents", headers=as_new)).status_code == 200
    listed = (await api.get("/api/v1/keys", headers=as_new)).json()
    assert {k["name"] for k in listed} == {"bootstrap", "laptop"}
    assert all("key" not in k for k in listed) and new["key"] not in str(listed)
    assert next(k for k in listed if k["name"] == "laptop")["last_used_at"] is not None

    soon = (utcnow() + timedelta(hours=1)).isoformat()
    temp = (await api.post("/api/v1/keys", json={"name": "ci", "expires_at": soon}, headers=rita)).json()
    assert (await api.get("/api/v1/keys", headers={"Authorization": f"Bearer {temp['key']}"})).status_code == 200
    with sessions.begin() as session:
        session.execute(update(ApiKey).where(ApiKey.id == temp["id"]).values(expires_at=utcnow() - timedelta(seconds=1)))
    err = assert_error(await api.get("/api/v1/keys", headers={"Authorization": f"Bearer {temp['key']}"}), 401, "unauthorized")
    assert "expired" in err["message"]
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    assert_error(await api.post("/api/v1/keys", json={"name": "x", "expires_at": past}, headers=rita), 422, "validation_error")
    assert_error(await api.post("/api/v1/keys", json={"name": "x", "expires_at": "2030-01-01T00:00:00"}, headers=rita),
                 422, "validation_error")

    assert (await api.delete(f"/api/v1/keys/{new['id']}", headers=rita)).status_code == 204
    assert_error(await api.get("/api/v1/keys", headers=as_new), 401, "unauthorized")
    # Another user's key is not yours to revoke, and users' keys are the admins' business.
    vic_key = (await api.get("/api/v1/keys", headers=keys.auth(keys.viewer))).json()[0]
    assert_error(await api.delete(f"/api/v1/keys/{vic_key['id']}", headers=rita), 404, "not_found")
    assert_error(await api.get(f"/api/v1/users/{vic_key['user_id']}/keys", headers=rita), 403, "forbidden")


async def test_admins_manage_users_keys_and_read_the_audit_log(api: httpx.AsyncClient, keys: Keys, sessions) -> None:
    admin = keys.auth(keys.admin)
    vic = me(sessions, "vic@test")
    made = (await api.post(f"/api/v1/users/{vic.id}/keys", json={"name": "grafana"}, headers=admin)).json()
    assert (await api.get("/api/v1/incidents", headers={"Authorization": f"Bearer {made['key']}"})).status_code == 200
    assert_error(await api.post("/api/v1/incidents/1/acknowledge", headers={"Authorization": f"Bearer {made['key']}"}),
                 403, "forbidden")  # the key has its user's role
    assert made["id"] in [k["id"] for k in (await api.get(f"/api/v1/users/{vic.id}/keys", headers=admin)).json()]
    assert (await api.delete(f"/api/v1/users/{vic.id}/keys/{made['id']}", headers=admin)).status_code == 204
    assert_error(await api.post("/api/v1/users/999999/keys", json={"name": "x"}, headers=admin), 404, "not_found")

    log = (await api.get("/api/v1/audit-log", params={"user_id": vic.id}, headers=admin)).json()
    assert [(e["action"], e["key_id"]) for e in log] == [("key.revoke", made["id"]), ("key.create", made["id"])]
    assert all(e["actor"].startswith("admin@test") and e["client"] for e in log)
    assert made["key"] not in str(log)
    assert_error(await api.get("/api/v1/audit-log", headers=keys.auth(keys.responder)), 403, "forbidden")


async def test_the_last_usable_admin_key_cannot_be_revoked(api: httpx.AsyncClient, keys: Keys, sessions) -> None:
    admin = keys.auth(keys.admin)
    own = (await api.get("/api/v1/keys", headers=admin)).json()
    assert_error(await api.delete(f"/api/v1/keys/{own[0]['id']}", headers=admin), 409, "last_admin")
    spare = (await api.post("/api/v1/keys", json={"name": "spare"}, headers=admin)).json()
    assert (await api.delete(f"/api/v1/keys/{own[0]['id']}", headers=admin)).status_code == 204
    assert_error(await api.delete(f"/api/v1/keys/{spare['id']}", headers={"Authorization": f"Bearer {spare['key']}"}),
                 409, "last_admin")


async def test_last_used_is_written_at_most_once_a_minute(api: httpx.AsyncClient, keys: Keys, sessions) -> None:
    def last_used() -> object:
        with sessions() as session:
            return session.scalar(select(ApiKey.last_used_at).where(ApiKey.key_hash == hash_key(keys.viewer)))

    assert last_used() is None
    await api.get("/api/v1/incidents", headers=keys.auth(keys.viewer))
    first = last_used()
    assert first is not None
    await api.get("/api/v1/incidents", headers=keys.auth(keys.viewer))
    assert last_used() == first
    with sessions.begin() as session:
        session.execute(update(ApiKey).where(ApiKey.key_hash == hash_key(keys.viewer))
                        .values(last_used_at=utcnow() - timedelta(seconds=61)))
    await api.get("/api/v1/incidents", headers=keys.auth(keys.viewer))
    assert last_used() > first  # type: ignore[operator]


async def test_failed_authentication_is_rate_limited_per_client(api: httpx.AsyncClient, keys: Keys) -> None:
    for _ in range(30):  # no key at all guesses nothing: not counted
        assert (await api.get("/api/v1/incidents")).status_code == 401
    bad = {"Authorization": "Bearer vgl_api_wrong"}
    codes = [(await api.get("/api/v1/incidents", headers=bad)).status_code for _ in range(25)]
    assert codes[:20] == [401] * 20 and codes[20:] == [429] * 5
    limited = await api.get("/api/v1/incidents", headers=keys.auth(keys.viewer))  # the address is blocked, any key
    err = assert_error(limited, 429, "too_many_requests")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60 and err["details"] == {"limit": "20 per 1 minute"}
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=api._transport.app, client=("10.1.2.3", 5555)),  # noqa: SLF001
                              base_url="http://vigil.test")
    async with other:
        assert (await other.get("/api/v1/incidents", headers=keys.auth(keys.viewer))).status_code == 200
