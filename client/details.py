"""What the Temporal Web UI shows of an incident before its first workflow task: static summary and details."""

from __future__ import annotations

from vigil.alert_context import AlertContext, context_of
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
        f"{_context(context_of(lead))}"
        f"**First alert labels**\n\n{labels}\n"
    )


def _context(context: AlertContext) -> str:
    """The first alert's runbook (first), links, description and details, cut to what a page shows."""
    out = ""
    if links := context.shown_links():
        out += "**Links**\n\n" + "".join(f"- [{_md(text)}]({_url(href)})\n" for text, href in links) + "\n"
    if images := context.shown_images():
        out += "**Images**\n\n" + "".join(f"- [{_md(alt)}]({_url(href)})\n" for alt, href in images) + "\n"
    if description := context.shown_description():
        out += f"**Description**\n\n{_md(description)}\n\n"
    if details := context.shown_details():
        out += "**Details**\n\n" + "".join(f"- `{_code(k)}`: {_md(v)}\n" for k, v in details) + "\n"
    return out


def _md(text: str) -> str:
    """Alert text as literal Markdown text: the UI renders it, and a sender's `[x](javascript:…)` must stay text."""
    return "".join(f"\\{c}" if c in "\\`*_[]()<>#|" else c for c in text)


def _code(text: str) -> str:
    return text.replace("`", "'")


def _url(href: str) -> str:
    """A link target that cannot close the Markdown link early."""
    return href.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
