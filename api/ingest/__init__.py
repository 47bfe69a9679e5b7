"""Alert ingestion: Alertmanager webhooks and the PagerDuty Events v2 compatible endpoint."""
