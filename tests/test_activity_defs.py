"""Every blocking activity the worker runs is cancelled at safe points, never by an exception raised inside its
thread (activities/__init__.py says what that did to a worker)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client

from vigil.settings import Settings
from worker import build_worker


async def test_no_blocking_activity_takes_a_thread_cancel_exception(
    client: Client, settings: Settings, sessions,  # noqa: ANN001 - the conftest fixture
) -> None:
    with ThreadPoolExecutor(max_workers=2) as executor:
        worker = build_worker(client, settings, sessions, executor)
        # The definitions the worker registered (private to the SDK, hence the reach).
        definitions = list(worker._activity_worker._activities.values())  # type: ignore[union-attr]
    blocking = [d for d in definitions if not d.is_async]
    assert len(blocking) >= 10, [d.name for d in blocking]
    assert [d.name for d in blocking if not d.no_thread_cancel_exception] == []
