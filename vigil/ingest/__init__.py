"""Ingestion core shared by the API and the outbox reconciler: store alerts, deliver what is new."""
