"""Domain errors the client raises: what Temporal's answer means for an incident, not how it was said.

api/errors.py maps each to HTTP once; callers that need a different outcome (an ack link, a Jira event) catch
them by type, never by a status code.
"""

from __future__ import annotations

from vigil.contracts import IncidentStatus, incident_ref


class TemporalUnavailable(Exception):
    """Temporal cannot be reached; callers answer 503 and keep what they stored."""


class WorkflowTimeout(Exception):
    """A workflow did not answer in time (typically: no worker is running)."""


class IncidentError(Exception):
    """A refusal about one incident."""

    def __init__(self, number: int, message: str) -> None:
        super().__init__(message)
        self.number = number
        self.message = message


class IncidentNotFound(IncidentError):
    """No incident with that number."""

    def __init__(self, number: int) -> None:
        super().__init__(number, f"{incident_ref(number)} does not exist")


class TransitionRefused(IncidentError):
    """The state machine refused the change; `current` is the status it refused it in."""

    def __init__(self, number: int, current: IncidentStatus, message: str) -> None:
        super().__init__(number, message)
        self.current = current


class IncidentClosed(TransitionRefused):
    """The incident is closed (or closing): it takes no more changes and no more alerts."""

    def __init__(self, number: int, message: str | None = None) -> None:
        super().__init__(number, IncidentStatus.closed, message or f"{incident_ref(number)} is closed")


class ResolutionRequired(IncidentError):
    """A resolve without a resolution note."""


class PostmortemRequired(IncidentError):
    """A close refused while the required postmortem is a draft; `details` says what is missing and where."""

    def __init__(self, number: int, message: str, details: dict | None = None) -> None:
        super().__init__(number, message)
        self.details = details or {}


class NotStarted(IncidentError):
    """The incident's workflow has not started yet (its alerts wait in the outbox); the caller retries."""

    def __init__(self, number: int) -> None:
        super().__init__(number, f"{incident_ref(number)} has no running workflow yet; retry shortly")


class GroupKeptClosing(Exception):
    """A group's incident closed under us on every attempt; the sender should retry."""
