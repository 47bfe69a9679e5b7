"""Pages first (issue 13): a backlog of Jira work on the shared task queue does not delay a page.

A real worker with two activity slots, a slow Jira (every answer 0.3 s later) and 30 incidents whose Jira sync
children each queue an issue create (a search and a create: two slow answers), so the creates run at most two
at a time. One more incident opens while most of them wait; its page must go out as soon as a slot frees, not
after the backlog. The incident's tasks and pages run at PAGE_PRIORITY_KEY and the Jira sync at
BACKGROUND_PRIORITY_KEY (docs/deploy.md, "Pages first"). With the two keys equal, or on a server that does not
order by priority (matching.useNewMatcher=false), the page queues behind the creates and this test fails.

This module runs its own dev server with one task queue partition: the server orders tasks by priority within
a partition, and every server, the dev server included, splits a task queue into 4 unless told otherwise.
Across partitions the order is only approximate (a page then waits for some of the backlog).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper, TimeSkippingConfig, WorkflowEnvironment

from tests.conftest import Inbox, Keys, start_dev_server
from tests.flows import trigger
from tests.helpers import eventually
from tests.jira_server import JiraServer
from vigil.settings import Settings
from worker import build_worker

BACKLOG = 30  # incidents, each with one Jira create (a search and a create: two slow answers)
JIRA_LATENCY = 0.3
ACTIVITY_SLOTS = 2


@pytest.fixture(scope="module")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server("matching.numTaskqueueReadPartitions=1", "matching.numTaskqueueWritePartitions=1")
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="module")
def skipper(client: Client) -> TimeSkipper:
    return TimeSkipper(client, config=TimeSkippingConfig(enabled=False))


@pytest.fixture
def settings(settings: Settings, jira_server: JiraServer) -> Settings:
    worker = settings.worker.model_copy(update={"max_concurrent_activities": ACTIVITY_SLOTS})
    return settings.model_copy(update={"jira": jira_server.cloud_settings(), "worker": worker})


async def test_a_page_runs_ahead_of_a_jira_backlog(
    api: httpx.AsyncClient, keys: Keys, client: Client, settings: Settings, sessions: sessionmaker[Session],
    inbox: Inbox, jira_server: JiraServer,
) -> None:
    jira_server.latency = JIRA_LATENCY
    # Opened before any worker polls, so the whole backlog is queued at once, however slow the machine. One
    # service each: alerts of one service and alertname would group into one incident.
    backlog = [await trigger(api, keys, dedup_key=f"backlog-{i}", component=f"shop-{i}") for i in range(BACKLOG)]
    threads = ACTIVITY_SLOTS + settings.worker.max_concurrent_local_activities  # as worker.main sizes it
    with ThreadPoolExecutor(max_workers=threads) as executor:
        async with build_worker(client, settings, sessions, executor):
            # Jira has its first issue: the creates hold both slots and the rest of them wait in the queue.
            await eventually(lambda: jira_server.created_count >= 1, timeout=30)
            number = await trigger(api, keys, dedup_key="page-now", component="payments")
            await eventually(lambda: inbox.for_incident(number), timeout=30)
            created = jira_server.created_count
            assert created < BACKLOG / 2, (
                f"INC-{number}'s page waited for the Jira backlog: {created} of {BACKLOG + 1} issues existed by then"
            )
            # The backlog's own pages went ahead of their Jira work too.
            await eventually(lambda: all(inbox.for_incident(n) for n in backlog), timeout=30)
            created = jira_server.created_count
            assert created < BACKLOG / 2, f"the first pages waited for Jira: {created} issues existed by then"

            # The background work is only behind, never lost: every incident gets its issue.
            jira_server.latency = 0
            await eventually(lambda: jira_server.created_count == BACKLOG + 1, timeout=30)
            assert all(len(inbox.for_incident(n)) == 1 for n in [*backlog, number])
