"""Escalation policy activities: the policy routed for a new incident, frozen into its workflow."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from vigil.contracts import FrozenPolicy, LegacyPolicy, LoadPolicyInput
from vigil.escalation import default_plan, legacy_default_policy
from vigil.logging import get_logger
from vigil.policies import service as policies
from vigil.settings import EscalationSettings

log = get_logger(__name__)


class PolicyActivities:
    def __init__(self, sessions: sessionmaker[Session], escalation: EscalationSettings) -> None:
        self.sessions = sessions
        self.escalation = escalation

    @activity.defn(no_thread_cancel_exception=True)
    def freeze_escalation_policy(self, inp: LoadPolicyInput) -> FrozenPolicy:
        """The policy routed for this service and severity, with its waits scaled, frozen into a new incident;
        the built-in ladder from settings when no route matches."""
        default = default_plan(self.escalation)
        try:
            with self.sessions() as session:
                plan = policies.freeze_policy(session=session, service=inp.service, severity=inp.severity, default=default)
        except SQLAlchemyError as err:
            # Never hold the first page for the database: page by the built-in ladder instead.
            log.error("policy database unavailable; freezing the default ladder", error=str(err),
                      workflow_id=activity.info().workflow_id)
            return default.model_copy(update={"name": "default (policy database unavailable)"})
        log.info("escalation policy frozen", workflow_id=activity.info().workflow_id, policy=plan.name)
        return plan

    @activity.defn(no_thread_cancel_exception=True)
    def load_escalation_policy(self, inp: LoadPolicyInput) -> LegacyPolicy:
        """The fixed ladder of incidents started before escalation policies (kept for their replay)."""
        return legacy_default_policy(self.escalation)
