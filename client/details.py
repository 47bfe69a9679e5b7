"""What the Temporal Web UI shows of an incident before its first workflow task: static summary and details."""

from __future__ import annotations

from vigil.contracts import Alert, incident_ref, workflow_id
from vigil.ingest.store import IntegrationInfo, OpenIncident
from vigil.normalize import alertname


def static_summary(incident: OpenIncident, lead: Alert) -> str:
    """`INC-42 [critical] checkout: HighErrorRate`: one line in the workflow list."""
    return f"{workflow_id(incident.number)} [{incident.severity.value}] {incident.service}: {alertname(lead)}"


def static_details(incident: OpenIncident, lead: Alert, integration: IntegrationInfo, public_url: str) -> str:
    """Markdown for the workflow's page: what opened the incident and where the API shows it."""
    labels = "\n".join(f"- `{k}` = `{v}`" for k, v in sorted(lead.labels.items()))
    return (
        f"### {incident_ref(incident.number)}: {incident.title}\n\n"
        f"- **Service:** {incident.service}\n- **Severity:** {incident.severity.value}\n"
        f"- **Group key:** `{incident.group_key}`\n- **Integration:** {integration.name}\n"
        f"- **API:** {public_url}/api/v1/incidents/{incident_ref(incident.number)}\n\n"
        f"**First alert labels**\n\n{labels}\n"
    )
