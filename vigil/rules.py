"""Per-integration routing and grouping rules: label matchers route an alert to a service, `group_by` labels
form the group key, and a severity map overrides the default severity names."""

from __future__ import annotations

from pydantic import BaseModel, Field, StrictInt, field_validator

from vigil.contracts import Alert, Severity
from vigil.matchers import Matcher, alert_labels, matches_all
from vigil.normalize import DEFAULT_GROUP_BY, map_severity


class Route(BaseModel):
    """The first route whose matchers all match sets the alert's service."""

    matchers: list[Matcher] = Field(min_length=1, max_length=20)
    service: str = Field(min_length=1, max_length=200)


class Threshold(BaseModel):
    """Open an incident once `count` alerts of a group arrived within `window_seconds`, or at once for an alert
    at least as severe as `immediate_severity`. Until then the alerts are stored as `pending`."""

    count: StrictInt = Field(default=1, ge=1, le=10_000)
    window_seconds: StrictInt = Field(default=600, ge=1, le=7 * 24 * 3600)
    immediate_severity: Severity = Severity.critical


class IntegrationRules(BaseModel):
    routes: list[Route] = Field(default_factory=list, max_length=200)
    group_by: list[str] = Field(default_factory=lambda: list(DEFAULT_GROUP_BY), min_length=1, max_length=10)
    threshold: Threshold = Field(default_factory=Threshold)
    severity_map: dict[str, Severity] = Field(
        default_factory=dict, description="Source severity (case-insensitive) -> critical|high|warning|info"
    )

    @field_validator("severity_map")
    @classmethod
    def _lowercase(cls, value: dict[str, Severity]) -> dict[str, Severity]:
        return {k.strip().lower(): v for k, v in value.items()}

    @field_validator("group_by")
    @classmethod
    def _label_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.replace("_", "a").isalnum() or name[0].isdigit():
                raise ValueError(f"{name!r} is not a label name")
        return value

    def apply(self, alert: Alert) -> Alert:
        """Route and re-map severity (idempotent: raw severity and labels are kept)."""
        update: dict = {}
        raw = alert.raw_severity
        if raw is not None:
            mapped = self.severity_map.get(raw.strip().lower()) or map_severity(raw)
            if mapped is not alert.severity:
                update["severity"] = mapped
        labels = alert_labels(alert)
        route = next((r for r in self.routes if matches_all(r.matchers, labels)), None)
        if route is not None and route.service != alert.service:
            update["service"] = route.service
        return alert.model_copy(update=update) if update else alert
