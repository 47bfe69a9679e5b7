"""The incident workflow: `workflow.py` reads as the incident's life; the objects it holds live beside it."""

from workflows.incident.workflow import IncidentWorkflow

__all__ = ["IncidentWorkflow"]
