"""The Jira settings checked against the project: credentials, project, issue type, status and transition names.

Transitions belong to an issue's current status, so they are checked on Vigil's newest issue: the ones Vigil
would apply next from the status it is in must be offered there. /readyz reports the result
(`checks.jira`); it never gates readiness.
"""

from __future__ import annotations

from collections.abc import Callable

from jira import JIRA, JIRAError
from requests import RequestException

from vigil.jira_client import make_client
from vigil.settings import JiraSettings

# Vigil status -> the statuses Vigil may move an incident to next (whose transitions must then be offered).
NEXT = {"triggered": ("acknowledged", "resolved"), "acknowledged": ("resolved",), "resolved": ("triggered",)}
REACHED = {"acknowledge": "acknowledged", "resolve": "resolved", "reopen": "triggered"}


def check_jira(settings: JiraSettings, client_factory: Callable[[JiraSettings], JIRA] = make_client) -> list[str]:
    """What is wrong with the Jira settings, in words; empty when everything checked matches."""
    try:
        client = client_factory(settings)
        client.myself()
        types = {t.name: t for t in client.issue_types_for_project(settings.project_key)}
        problems = _statuses(settings, types)
        newest = client.search_issues('labels = "vigil" ORDER BY created DESC', maxResults=1, fields="status")
        if newest:
            problems += _transitions(settings, newest[0].key, newest[0].fields.status.name, client.transitions(newest[0].key))
    except JIRAError as err:
        return [f"Jira answered HTTP {err.status_code} ({(err.text or '').strip()[:200]})"]
    except RequestException as err:
        return [f"Jira unreachable: {type(err).__name__}"]
    return problems


def _statuses(settings: JiraSettings, types: dict) -> list[str]:
    key, wanted = settings.project_key, settings.issue_type
    if wanted not in types:
        return [f"issue type {wanted!r} is not in project {key} (it has {', '.join(sorted(types))})"]
    known = {s.name for s in types[wanted].statuses}
    return [
        f"VIGIL_JIRA_STATUSES names {name!r}, which is not a status of {key} {wanted} issues "
        f"({', '.join(sorted(known))})"
        for name in settings.statuses if name not in known
    ]


def _transitions(settings: JiraSettings, issue: str, status: str, offered: list[dict]) -> list[str]:
    action = settings.statuses.get(status)
    if action is None:
        return [f"{issue} is in status {status!r}, which VIGIL_JIRA_STATUSES does not map"]
    names = {t["name"] for t in offered}
    problems = []
    for target in NEXT[REACHED[action]]:
        name = settings.transitions.get(target)
        if name is not None and name not in names:
            problems.append(
                f"VIGIL_JIRA_TRANSITIONS {target}: {name!r} is not offered on {issue} in status {status!r} "
                f"(offered: {', '.join(sorted(names)) or 'none'})"
            )
    return problems
