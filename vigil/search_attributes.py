"""Custom Temporal search attributes: one list for the dev server, docker-compose and workflow code."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

# Name -> Temporal type. All keywords, and none may hold personal data (they are visible in the UI).
SEARCH_ATTRIBUTES: dict[str, str] = {
    "IncidentNumber": "Keyword",
    "IncidentStatus": "Keyword",
    "Severity": "Keyword",
    "Service": "Keyword",
    "GroupKey": "Keyword",
    "Assignee": "Keyword",
    "JiraKey": "Keyword",
    "Postmortem": "Keyword",  # awaiting | complete | waived: `Postmortem="awaiting"` lists the ones to write
}

INCIDENT_NUMBER = SearchAttributeKey.for_keyword("IncidentNumber")
INCIDENT_STATUS = SearchAttributeKey.for_keyword("IncidentStatus")
SEVERITY = SearchAttributeKey.for_keyword("Severity")
SERVICE = SearchAttributeKey.for_keyword("Service")
GROUP_KEY = SearchAttributeKey.for_keyword("GroupKey")
ASSIGNEE = SearchAttributeKey.for_keyword("Assignee")
JIRA_KEY = SearchAttributeKey.for_keyword("JiraKey")
POSTMORTEM = SearchAttributeKey.for_keyword("Postmortem")
ALL_KEYS = (INCIDENT_NUMBER, INCIDENT_STATUS, SEVERITY, SERVICE, GROUP_KEY, ASSIGNEE, JIRA_KEY, POSTMORTEM)


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for the `temporal` CLI."""
    flags: list[str] = []
    for name, kind in SEARCH_ATTRIBUTES.items():
        flags += ["--search-attribute", f"{name}={kind}"]
    return flags
