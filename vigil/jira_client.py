"""The `jira` client as Vigil builds it: used by the Jira activities, the settings check and the API's echo check."""

from __future__ import annotations

from jira import JIRA

from vigil.settings import JiraSettings


def make_client(settings: JiraSettings) -> JIRA:
    """The real client, with its own retries off (they sleep inside the call and re-send creates): Temporal's
    retry policy is the only one. Constructing it reads serverInfo, which tells Cloud from Data Center (the
    search endpoint and the assignee format differ)."""
    auth: dict = (
        {"token_auth": settings.pat.get_secret_value()} if settings.pat
        else {"basic_auth": (settings.email, settings.api_token.get_secret_value())}  # type: ignore[union-attr]
    )
    return JIRA(server=settings.url, max_retries=0, timeout=settings.timeout_seconds, **auth)
