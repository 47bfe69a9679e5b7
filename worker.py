"""The Vigil worker: runs IncidentWorkflow and every activity. SIGTERM/SIGINT shut it down gracefully."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from prometheus_client import start_http_server
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkerDeploymentConfig

from activities.channels import EmailSender
from activities.evidence import EvidenceActivities
from activities.handoff import HandoffActivities
from activities.heartbeat import HeartbeatActivities
from activities.jira import JiraActivities
from activities.lifecycle import LifecycleActivities
from activities.notify import Links, NotifyActivities
from activities.reconcile import ReconcileActivities, ReconcilerActivities
from activities.people import PeopleActivities
from activities.policy import PolicyActivities
from activities.postmortem import PostmortemActivities
from activities.projection import ProjectionActivities
from vigil import crypto
from vigil.bootstrap import ack_link_secret
from vigil.build import build_id
from vigil.contracts import Channel
from vigil.db import create_db_engine, session_factory
from vigil.providers import PhoneProvider, build_phone_providers
from vigil.providers.webhook import WebhookSender
from vigil.rca.artifacts import build_artifact_store
from vigil.logging import configure_logging, get_logger
from vigil.settings import Settings, WorkerSettings, get_settings
from client.connection import connect
from client.dedup_keys import DedupKeys
from client.handoffs import ensure_handoffs
from client.incidents import IncidentClient
from client.outbox import AlertOutbox
from client.reconciler import ensure_reconciler
from workflows.handoff import ScheduleHandoffWorkflow
from workflows.heartbeat import HeartbeatMonitorWorkflow
from workflows.incident import IncidentWorkflow
from workflows.jira_sync import JiraSyncWorkflow
from workflows.reconcile import OutboxReconcileWorkflow, ReconcilerWorkflow

log = get_logger("vigil.worker")
# Workflows run without the SDK's sandbox. The sandbox imported a workflow's module afresh for every instance
# (re-running its class definitions) and wrapped every activation in its import machinery: in a burst of 300 new
# incidents that was a third of the worker's CPU (docs/benchmarks.md, "Where the worker's time went"), and it
# guarded nothing of ours, since every module under workflows/ already passed through it (imports_passed_through).
# Determinism is kept by other means: workflows/ may not import I/O libraries (import-linter, tests/test_layers.py),
# keeps no module-level state, and every change replays the committed histories (tests/test_replay.py) and, before
# a rollout, the live ones (`vigil-deploy check`, which still replays inside the sandbox).
WORKFLOW_RUNNER = UnsandboxedWorkflowRunner()
# Every workflow this build runs: the worker registers them, and the replay gate (`vigil-deploy check`) replays
# the live histories of their types against them.
WORKFLOWS = [
    IncidentWorkflow, OutboxReconcileWorkflow, ReconcilerWorkflow, JiraSyncWorkflow, HeartbeatMonitorWorkflow,
    ScheduleHandoffWorkflow,
]


def build_worker(
    client: Client,
    settings: Settings,
    sessions: sessionmaker[Session],
    executor: ThreadPoolExecutor,
    *,
    sms: PhoneProvider | None = None,
    ivr: PhoneProvider | None = None,
) -> Worker:
    """One worker with every workflow and activity; blocking clients run on the thread pool."""
    crypto.configure(settings.core)  # webhook secrets are decrypted with the key of these settings
    policy = PolicyActivities(sessions, settings.escalation)
    people = PeopleActivities(sessions, settings.escalation)
    projection = ProjectionActivities(sessions)
    delivery = AlertOutbox(sessions, settings, IncidentClient(sessions, settings, _constant(client)))
    reconcile = ReconcileActivities(delivery)
    heartbeat = HeartbeatActivities(sessions, delivery, DedupKeys(sessions, delivery.incidents))
    handoff = HandoffActivities(sessions, EmailSender(settings.smtp), settings.core.public_url)
    lifecycle = LifecycleActivities(sessions, _constant(client), delivery)
    reconciler = ReconcilerActivities(reconcile, lifecycle)
    notify = build_notify(settings, sessions, sms=sms, ivr=ivr)
    artifacts = build_artifact_store(settings.rca, settings.core)  # once per process: charts, attachments
    jira = JiraActivities(sessions, settings.jira, store=artifacts)  # the postmortem PDF's charts
    postmortem = PostmortemActivities(
        sessions, settings.rca, settings.escalation, EmailSender(settings.smtp), settings.core.public_url
    )
    evidence = EvidenceActivities(sessions, settings.rca, artifacts)
    return Worker(
        client,
        task_queue=settings.temporal.task_queue,
        workflows=WORKFLOWS,
        workflow_runner=WORKFLOW_RUNNER,
        activities=[
            policy.load_escalation_policy,
            policy.freeze_escalation_policy,
            people.resolve_targets,
            projection.project_incident,
            projection.release_group,
            notify.send_notification,
            jira.apply_jira_op,
            reconcile.redeliver_outbox,
            lifecycle.cancel_request,
            lifecycle.check_ended_incidents,
            lifecycle.close_lost_attempts,
            reconciler.reconcile_continuously,
            postmortem.open_postmortem,
            postmortem.draft_postmortem,
            postmortem.remind_postmortem,
            evidence.gather_evidence,
            heartbeat.open_heartbeat_alert,
            heartbeat.resolve_heartbeat_alert,
            handoff.plan_handoff,
            handoff.notify_handoff,
        ],
        activity_executor=executor,
        max_concurrent_activities=settings.worker.max_concurrent_activities,
        max_concurrent_local_activities=settings.worker.max_concurrent_local_activities,
        max_concurrent_workflow_tasks=settings.worker.max_concurrent_workflow_tasks,
        # An evicted incident is replayed from its whole history on its next timer: that page would be late.
        max_cached_workflows=settings.worker.max_cached_workflows,
        graceful_shutdown_timeout=timedelta(seconds=settings.worker.graceful_shutdown_seconds),
        deployment_config=deployment_config(settings.worker),
    )


def deployment_config(worker: WorkerSettings) -> WorkerDeploymentConfig | None:
    """This build as a version of the Worker Deployment (docs/deploy.md); None: an unversioned worker."""
    if not worker.versioning:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=worker.deployment_name, build_id=build_id(worker.build_id)),
        use_worker_versioning=True,
        # Every type auto-upgrades (docs/deploy.md says why, type by type). Set here, not on each @workflow.defn:
        # the SDK sends a type's behaviour from unversioned workers too, and the server refuses that task.
        default_versioning_behavior=VersioningBehavior.AUTO_UPGRADE,
    )


def _version(worker: WorkerSettings) -> str:
    """What the logs say about this worker's deployment version."""
    return f"{worker.deployment_name}/{build_id(worker.build_id)}" if worker.versioning else "unversioned"


def build_notify(
    settings: Settings, sessions: sessionmaker[Session], *, sms: PhoneProvider | None = None,
    ivr: PhoneProvider | None = None,
) -> NotifyActivities:
    """The notification activities with the configured providers (console when no middleware URL is set)."""
    phones = build_phone_providers(settings)
    p = settings.providers
    public = settings.core.public_url.rstrip("/")
    links = Links(
        public_url=public,
        ack_secret=ack_link_secret(settings),
        ack_ttl=timedelta(seconds=settings.ack_links.ttl_seconds),
        callback_url=f"{(p.callback_base_url or public).rstrip('/')}/api/v1/providers/{p.name}/callbacks",
    )
    return NotifyActivities(
        sessions,
        EmailSender(settings.smtp),
        {Channel.sms: sms or phones["sms"], Channel.ivr: ivr or phones["ivr"]},
        WebhookSender(connect_timeout_seconds=p.connect_timeout_seconds, read_timeout_seconds=p.read_timeout_seconds,
                      allowlist=settings.core.private_url_allowlist),
        links,
    )


def _jira_state(settings: Settings) -> str:
    """What the logs and /readyz say about Jira sync."""
    j = settings.jira
    return f"on ({j.url}, project {j.project_key})" if j.enabled else "off (VIGIL_JIRA_URL is not set)"


def _constant(client: Client) -> Callable[[], Awaitable[Client]]:
    async def get() -> Client:
        return client

    return get


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.core.log_format, settings.core.log_level)
    if settings.worker.metrics_port:
        start_http_server(settings.worker.metrics_port, addr=settings.worker.metrics_host)
    engine = create_db_engine(settings.core.database_url)
    client = await connect(settings.temporal)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Local activities (projections) share the pool: threads for both, so slow Jira calls never starve them.
    threads = settings.worker.max_concurrent_activities + settings.worker.max_concurrent_local_activities
    with ThreadPoolExecutor(max_workers=threads) as executor:
        worker = build_worker(client, settings, session_factory(engine), executor)
        await ensure_reconciler(client, settings)
        await ensure_handoffs(client, settings, session_factory(engine))  # schedules from before handoff timers
        log.info("worker started", task_queue=settings.temporal.task_queue, temporal=settings.temporal.address,
                 jira=_jira_state(settings), version=_version(settings.worker))
        async with worker:
            await stop.wait()
            log.info("worker stopping: finishing in-flight activities",
                     timeout_s=settings.worker.graceful_shutdown_seconds)
    engine.dispose()
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
    # Everything is shut down and flushed. Skip interpreter finalization: the Temporal core's threads can
    # still call into Python while it runs and abort the process (temporalio/sdk-python#300), which
    # would turn a clean SIGTERM into exit code -6 for the orchestrator.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
