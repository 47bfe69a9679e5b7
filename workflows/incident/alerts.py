"""The incident's alerts: one entry per fingerprint, each new or changed alert on the timeline, and the
incident's severity raised by a more severe firing alert."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from vigil import search_attributes as sa
    from vigil.contracts import MAX_TRACKED_ALERTS, Alert, AlertStatus, IncidentState, alert_key, tracked
    from workflows.incident.jira_link import JiraLink
    from workflows.incident.timeline import SOURCE, Timeline


@dataclass
class Taken:
    new: int  # alerts not seen before
    refired: bool  # an alert is firing that was new or not firing before


class Alerts:
    def __init__(self, s: IncidentState, timeline: Timeline, jira: JiraLink) -> None:
        self.s, self.timeline, self.jira = s, timeline, jira

    def take(self, alerts: list[Alert]) -> Taken:
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
        return Taken(new=new, refired=refired)

    def all_resolved_at_source(self) -> bool:
        """False once alerts are untracked: whether those resolved is not known here."""
        if self.s.untracked_alerts:
            return False
        return bool(self.s.alerts) and all(a.status == AlertStatus.resolved for a in self.s.alerts.values())
