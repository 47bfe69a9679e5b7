"""Worker-side Prometheus metrics (served by the worker on VIGIL_WORKER_METRICS_PORT)."""

from prometheus_client import Counter

TRANSITIONS = Counter(
    "vigil_incident_transitions_total", "Incident state transitions projected by the worker", ["to"]
)
NOTIFICATIONS = Counter(
    "vigil_notifications_total", "Notification attempts by channel and outcome", ["channel", "status"]
)
