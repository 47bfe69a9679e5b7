"""The only code that talks to Temporal: IncidentClient, the alert outbox, the reconciler's start, the connection."""
