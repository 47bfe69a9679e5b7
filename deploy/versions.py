"""Promote, ramp and roll back worker versions: thin calls to Temporal's Worker Deployment API, no state of our own.

Temporal keeps which version is current or ramping and where each workflow runs; these functions only ask it. A
rollback first replays the running workflows against the build being restored (the replay gate) and pins the ones it
cannot run to the version they are on, so no incident is moved onto code that would break it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.deployment.v1 import WorkerDeploymentVersion
from temporalio.api.workflow.v1 import VersioningOverride, WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest, DescribeWorkerDeploymentVersionRequest, SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest, UpdateWorkflowExecutionOptionsRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from deploy import gate

IDENTITY = "vigil-deploy"


@dataclass
class Routing:
    current: str | None  # build id; None: unversioned workers get new workflows
    ramping: str | None
    ramp_percentage: float


@dataclass
class Rollback:
    to: str
    pinned: dict[str, str] = field(default_factory=dict)  # workflow id -> the build id it stays on
    report: gate.Report | None = None


async def routing(client: Client, deployment: str) -> Routing:
    """Which build is current and which one ramps, as Temporal has it."""
    found = await client.workflow_service.describe_worker_deployment(
        DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment)
    )
    config = found.worker_deployment_info.routing_config
    return Routing(
        current=config.current_deployment_version.build_id or None,
        ramping=config.ramping_deployment_version.build_id or None,
        ramp_percentage=config.ramping_version_percentage,
    )


async def wait_for_pollers(client: Client, deployment: str, build_id: str, timeout: float = 60.0) -> None:
    """Until a worker of `build_id` has polled: Temporal refuses to route to a version it has not seen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = await client.workflow_service.describe_worker_deployment_version(
                DescribeWorkerDeploymentVersionRequest(
                    namespace=client.namespace,
                    deployment_version=WorkerDeploymentVersion(deployment_name=deployment, build_id=build_id),
                )
            )
            if found.worker_deployment_version_info.task_queue_infos:
                return
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"no worker of {deployment}/{build_id} polled within {timeout:g}s")
        await asyncio.sleep(0.5)  # polling Temporal's view; there is no watch API for a new version


async def set_current(client: Client, deployment: str, build_id: str) -> None:
    """Make `build_id` current: new workflows start on it, auto-upgrade ones move to it on their next task."""
    await wait_for_pollers(client, deployment, build_id)
    await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace, deployment_name=deployment, build_id=build_id, identity=IDENTITY,
        )
    )


async def set_ramping(client: Client, deployment: str, build_id: str, percentage: float) -> None:
    """Send `percentage` of new and auto-upgrade workflows to `build_id` (0 with no build id: stop ramping)."""
    if build_id:
        await wait_for_pollers(client, deployment, build_id)
    await client.workflow_service.set_worker_deployment_ramping_version(
        SetWorkerDeploymentRampingVersionRequest(
            namespace=client.namespace, deployment_name=deployment, build_id=build_id, percentage=percentage,
            identity=IDENTITY,
        )
    )


async def pin(client: Client, workflow_id: str, deployment: str, build_id: str) -> None:
    """Keep one workflow on `build_id`, whatever becomes current (Temporal's versioning override)."""
    override = VersioningOverride(pinned=VersioningOverride.PinnedOverride(
        behavior=VersioningOverride.PinnedOverrideBehavior.PINNED_OVERRIDE_BEHAVIOR_PINNED,
        version=WorkerDeploymentVersion(deployment_name=deployment, build_id=build_id),
    ))
    await client.workflow_service.update_workflow_execution_options(UpdateWorkflowExecutionOptionsRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=workflow_id),  # its latest run, after any continue-as-new
        workflow_execution_options=WorkflowExecutionOptions(versioning_override=override),
        update_mask=FieldMask(paths=["versioning_override"]),
        identity=IDENTITY,
    ))


async def rollback(
    client: Client, deployment: str, to: str, workflows: Sequence[type], *, task_queue: str | None = None,
) -> Rollback:
    """Make `to` (this build, with `workflows`) current again; what it cannot replay stays pinned where it runs."""
    was = (await routing(client, deployment)).current
    result = Rollback(to=to)
    result.report = await gate.check(client, workflows, task_queue=task_queue, closed=0)
    for failure in result.report.failures:
        if was and was != to:
            await pin(client, failure.workflow_id, deployment, was)
            result.pinned[failure.workflow_id] = was
    await set_current(client, deployment, to)
    return result
