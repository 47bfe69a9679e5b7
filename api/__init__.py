"""FastAPI layer: thin routers by domain; they reach incidents through client.IncidentClient, never a workflow module."""
