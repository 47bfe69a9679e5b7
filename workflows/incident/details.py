"""What the Temporal UI shows of a running incident (its current details), and the link back to it."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from vigil.contracts import MAX_TRACKED_ALERTS, AlertStatus, IncidentInput, IncidentState, IncidentStatus

S = IncidentStatus


def temporal_url(inp: IncidentInput) -> str:
    info = workflow.info()
    return f"{inp.temporal_ui_url}/namespaces/{info.namespace}/workflows/{info.workflow_id}"


def show(s: IncidentState, next_step: str | None, postmortem: str | None = None) -> None:
    """Set the workflow's current details: status, where the ladder is, who acknowledged, alerts, Jira."""
    lines = [f"**Status:** {s.status.value}", f"**Severity:** {s.severity.value}"]
    if s.status == S.triggered and s.current_step:
        lines.append(f"**Current step:** {s.current_step}")
    if next_step:
        lines.append(next_step)
    elif s.status == S.triggered and s.next_escalation_at:
        lines.append(f"**Next escalation due:** {s.next_escalation_at.isoformat(timespec='seconds')}")
    if s.status == S.acknowledged and s.retrigger_at:
        lines.append(f"**Re-triggers at:** {s.retrigger_at.isoformat(timespec='seconds')} unless resolved")
    if s.acknowledged_by and s.status != S.triggered:
        lines.append(f"**Acknowledged by:** {s.acknowledged_by}")
    if s.resolution and s.status in (S.resolved, S.closed):
        lines.append(f"**Resolution:** {s.resolution}")
    firing = sum(1 for a in s.alerts.values() if a.status == AlertStatus.firing)
    lines.append(f"**Alerts:** {firing} firing / {s.alert_count} total")
    if s.untracked_alerts:
        lines.append(f"**Not auto-resolved:** over {MAX_TRACKED_ALERTS} alerts; resolve it by hand")
    if postmortem:
        lines.append(postmortem)
    if s.reopen_count:
        lines.append(f"**Reopened:** {s.reopen_count}×")
    if s.jira_key:
        lines.append(f"**Jira:** {s.jira_key}")
    if s.assignee:
        lines.append(f"**Assignee:** {s.assignee}")
    workflow.set_current_details("  \n".join(lines))
