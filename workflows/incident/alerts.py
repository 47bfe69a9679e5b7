"""What an alert does to the incident: one entry per fingerprint, each new or changed alert on the timeline,
the severity raised by a more severe firing alert; a re-fire reopens a resolved incident (within its reopen
window) or keeps a held resolution open (flapping); every alert resolved at the source resolves the incident,
at once or after the hold."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from vigil import search_attributes as sa
    from vigil.contracts import (
        MAX_TRACKED_ALERTS,
        AddAlertsResult,
        Alert,
        AlertStatus,
        IncidentInput,
        IncidentState,
        IncidentStatus,
        alert_key,
        tracked,
    )
    from vigil.escalation import human_duration
    from vigil.state_machine import Transition, can
    from workflows.incident.jira_link import JiraLink
    from workflows.incident.timeline import SOURCE, Timeline
    from workflows.incident.transitions import Transitions


class Alerts:
    def __init__(
        self, s: IncidentState, inp: IncidentInput, timeline: Timeline, jira: JiraLink, changes: Transitions
    ) -> None:
        self.s, self.inp, self.timeline, self.jira, self.changes = s, inp, timeline, jira, changes

    def take(self, alerts: list[Alert]) -> AddAlertsResult:
        new, refired = self._track(alerts)
        reopened = False
        if refired and self.s.status == IncidentStatus.resolved:
            self.changes.reopen(SOURCE, "Reopened: an alert fired again within the reopen window")
            reopened = True
        elif refired and self.s.resolve_due_at is not None:
            self.s.resolve_due_at = None
            self.timeline.record("flapping", SOURCE, "An alert fired again while its resolution was held: kept open")
        elif self.all_resolved_at_source() and can(self.s.status, Transition.resolve) and self.inp.auto_resolve:
            hold = timedelta(seconds=self.inp.hold_resolution_seconds)
            if not hold:
                self.changes.auto_resolve(f"Auto-resolved: all {self.s.alert_count} alert(s) resolved at the source")
            elif self.s.resolve_due_at is None:
                self.s.resolve_due_at = workflow.now() + hold
                self.timeline.record(
                    "resolution_held", SOURCE,
                    f"All alerts resolved at the source; resolving in {human_duration(hold)} unless one fires again",
                )
        return AddAlertsResult(number=self.s.number, status=self.s.status, new_alerts=new, reopened=reopened)

    def _track(self, alerts: list[Alert]) -> tuple[int, bool]:
        """Record new and changed alerts; (how many are new, whether one fired that was not firing)."""
        new, refired = 0, False
        for alert in alerts:
            key = alert_key(alert.fingerprint)
            known = self.s.alerts.get(key)
            if known is None:
                new += 1
                self.timeline.record("alert", SOURCE, f"New alert {alert.status.value}: {alert.summary}")
            elif known.status != alert.status:
                verb = "resolved at source" if alert.status == AlertStatus.resolved else "firing again"
                self.timeline.record("alert", SOURCE, f"Alert {verb}: {alert.summary}")
            refired |= alert.status == AlertStatus.firing and (known is None or known.status != alert.status)
            if known is None and len(self.s.alerts) >= MAX_TRACKED_ALERTS:
                # The state must fit in one payload: count it; the database keeps the alert itself.
                self.s.untracked_alerts += 1
            else:
                self.s.alerts[key] = tracked(alert)
            if alert.status == AlertStatus.firing and alert.severity.rank < self.s.severity.rank:
                self.s.severity = alert.severity
                workflow.upsert_search_attributes([sa.SEVERITY.value_set(self.s.severity.value)])
                self.timeline.record("severity", SOURCE, f"Severity raised to {alert.severity.value} by: {alert.summary}")
                self.jira.maybe_create()
        return new, refired

    def all_resolved_at_source(self) -> bool:
        """False once alerts are untracked: whether those resolved is not known here."""
        if self.s.untracked_alerts:
            return False
        return bool(self.s.alerts) and all(a.status == AlertStatus.resolved for a in self.s.alerts.values())
