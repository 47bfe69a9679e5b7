"""Timeouts and retry policies of the incident's activities, in one place."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import Priority, RetryPolicy

from vigil.contracts import BACKGROUND_PRIORITY_KEY

STORE_TIMEOUT = timedelta(seconds=10)
# DB projections must eventually land; retry forever with a capped backoff rather than fail the incident.
STORE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# Above one attempt's own bounds (HTTP: 3 s connect + 10 s read; SMTP: 10 s per step).
NOTIFY_TIMEOUT = timedelta(seconds=30)
# The activity heartbeats every second while it sends: a worker that died mid-send is noticed after this, and
# its page retried (with the same key) seconds later rather than after NOTIFY_TIMEOUT.
NOTIFY_HEARTBEAT = timedelta(seconds=5)
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=4
)
RESOLVE_TIMEOUT = timedelta(seconds=10)
RESOLVE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10))
# Bookkeeping that must never queue ahead of a page (the incident's own tasks run at PAGE_PRIORITY_KEY).
BACKGROUND = Priority(priority_key=BACKGROUND_PRIORITY_KEY)
# The projection runs as a local activity inside the workflow task (no activity task, no extra workflow task);
# a short bound, because the task's other commands (a page) wait for it. Past it the regular activity takes over.
PROJECT_LOCAL_TIMEOUT = timedelta(seconds=2)
PROJECT_LOCAL_RETRY = RetryPolicy(maximum_attempts=1)
