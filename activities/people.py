"""People activities: who a step of the ladder pages right now."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from vigil.contracts import ResolveTargetsInput, ResolveTargetsResult
from vigil.escalation import contact_recipient, default_plan
from vigil.logging import get_logger
from vigil.policies import service as policies
from vigil.settings import EscalationSettings

log = get_logger(__name__)


class PeopleActivities:
    def __init__(self, sessions: sessionmaker[Session], escalation: EscalationSettings) -> None:
        self.sessions = sessions
        self.escalation = escalation

    @activity.defn(no_thread_cancel_exception=True)
    def resolve_targets(self, inp: ResolveTargetsInput) -> ResolveTargetsResult:
        """Who a step pages right now: users, group members, whoever is on call, webhooks."""
        try:
            with self.sessions() as session:
                return policies.resolve_targets(session=session, targets=inp.targets, at=inp.at)
        except SQLAlchemyError as err:
            # The people tables are unreachable: page the default on-call contact rather than nobody.
            log.error("policy database unavailable; paging the default on-call contact", error=str(err),
                      workflow_id=activity.info().workflow_id)
            fallback = default_plan(self.escalation).steps[0].targets
            return ResolveTargetsResult(
                recipients=[contact_recipient(t) for t in fallback],
                unresolved=["database unavailable: paged the default on-call contact instead"],
            )
