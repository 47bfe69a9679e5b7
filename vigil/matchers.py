"""Alertmanager-style label matchers (`=`, `!=`, `=~`, `!~`), used by silences."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from vigil.contracts import Alert


class Matcher(BaseModel):
    """`name op value`; regexes are anchored (full match), and a missing label reads as ""."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    op: Literal["=", "!=", "=~", "!~"] = "="
    value: str = Field(max_length=1000)

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as err:
                raise ValueError(f"invalid regex {self.value!r}: {err}") from err
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit


def alert_labels(alert: Alert) -> dict[str, str]:
    """What matchers see: the alert's labels plus Vigil's own `service` and `severity`."""
    return {**alert.labels, "service": alert.service, "severity": alert.severity.value}


def matches_all(matchers: Sequence[Matcher], labels: dict[str, str]) -> bool:
    return bool(matchers) and all(m.matches(labels) for m in matchers)
