"""Short database writes of the incident (its projection, the group-key release, opening its postmortem), run as
local activities: inside the workflow task, with no activity task and no workflow task of their own.

A projection run as an activity task cost about six history events and a server round trip; as a local activity
it is one marker. Runs started before LOCAL_PROJECTION_PATCH keep the activity tasks their histories recorded.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from workflows.incident.options import (
        BACKGROUND, PROJECT_LOCAL_RETRY, PROJECT_LOCAL_TIMEOUT, STORE_RETRY, STORE_TIMEOUT,
    )

LOCAL_PROJECTION_PATCH = "local-projection"


async def store(activity: Any, arg: object, summary: str, *, result_type: type | None = None) -> Any:
    """Run a short database write: as a local activity where the run has the patch, and as a regular activity,
    retried until the database is back, if that fails or outlasts PROJECT_LOCAL_TIMEOUT. The workflow task's
    other commands (a page) wait for a local activity, so a database outage delays them by at most that bound
    per write; it delays the rows, never the page."""
    if workflow.patched(LOCAL_PROJECTION_PATCH):
        try:
            return await workflow.execute_local_activity(
                activity, arg, result_type=result_type, start_to_close_timeout=PROJECT_LOCAL_TIMEOUT,
                retry_policy=PROJECT_LOCAL_RETRY, summary=summary,
            )
        except FailureError as err:  # a local activity's own error or timeout (not wrapped in an ActivityError)
            workflow.logger.warning("local %s failed; retrying as an activity: %s", summary, err.cause or err)
    return await workflow.execute_activity(
        activity, arg, result_type=result_type, start_to_close_timeout=STORE_TIMEOUT, retry_policy=STORE_RETRY,
        priority=BACKGROUND, summary=summary,
    )
