"""Metric evidence: the alerts' PromQL, the incident window, a step that fits it, and range queries that
degrade to gaps instead of raising."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
import urllib3
from urllib3.util.retry import Retry

BEFORE = timedelta(minutes=30)  # the lead-up to the first alert
AFTER = timedelta(minutes=15)  # the recovery after resolve
MAX_POINTS = 500
# Round steps, in seconds: a chart of a 2-hour window gets 15 s, of a day 5 min.
STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?|0x[0-9a-f]+|inf|nan)$", re.IGNORECASE)
SET_OPERATOR = re.compile(r"\b(?:and|or|unless)\b", re.IGNORECASE)


@dataclass(frozen=True)
class QuerySpec:
    """One series to gather: its name in the document, the PromQL, where it came from, its alert threshold."""

    name: str
    promql: str
    source: str  # alert | service
    threshold: float | None = None


@dataclass
class SeriesResult:
    spec: QuerySpec
    step_seconds: int
    matrix: list[dict[str, Any]] = field(default_factory=list)  # Prometheus's [{"metric", "values"}]
    error: str | None = None

    def values(self) -> list[tuple[datetime, float]]:
        """Every point of every returned series, in time order (for charts and figures)."""
        points = [(datetime.fromtimestamp(float(t), UTC), float(v)) for s in self.matrix for t, v in s["values"]]
        return sorted(points)


def alert_expression(url: str | None) -> str | None:
    """The PromQL of an Alertmanager alert: `g0.expr` in its generatorURL (None for other sources)."""
    if not url:
        return None
    expr = parse_qs(urlsplit(url).query).get("g0.expr")
    return expr[0].strip() or None if expr else None


def window(started_at: datetime, resolved_at: datetime) -> tuple[datetime, datetime]:
    """[first alert - 30 min, resolved + 15 min]: the lead-up and the recovery around the incident."""
    return started_at - BEFORE, resolved_at + AFTER


def step_for(start: datetime, end: datetime, *, max_points: int = MAX_POINTS) -> int:
    """The smallest round step that keeps the range under `max_points` points."""
    seconds = max((end - start).total_seconds(), 1.0)
    for step in STEPS:
        if seconds / step <= max_points:
            return step
    return math.ceil(seconds / max_points)


def _depth_zero(expr: str) -> Iterator[tuple[int, str]]:
    """(index, char) of the characters outside brackets and string literals."""
    depth, quote, escaped = 0, "", False
    for i, ch in enumerate(expr):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            yield i, ch


def split_threshold(expr: str) -> tuple[str, float | None]:
    """`rate(x[5m]) > 0.05` -> (`rate(x[5m])`, 0.05): the series to chart and its threshold.

    Only a last, top-level comparison with a number, without `bool` and without a set operator (and/or/unless)
    at the top: anything else is charted as written, with no threshold.
    """
    outside = dict(_depth_zero(expr))
    cut = None
    i = 0
    while i < len(expr):
        # Longest operator first (">=" before ">"); every character of it must be outside brackets and strings.
        op = next((c for c in COMPARISONS if expr.startswith(c, i) and all(i + k in outside for k in range(len(c)))), None)
        if op:
            cut = (i, op)
        i += len(op) if op else 1
    if cut is None:
        return expr, None
    at, op = cut
    if op == "!=":  # no line to draw: "anything but 3"
        return expr, None
    left, right = expr[:at].strip(), expr[at + len(op):].strip()
    if right.lower().startswith("bool") or not NUMBER.match(right) or not left:
        return expr, None
    top_left = "".join(ch if i in outside else " " for i, ch in enumerate(expr[:at]))
    if SET_OPERATOR.search(top_left) or any(c in top_left for c in COMPARISONS):
        return expr, None
    return left, float(right)


def unreachable(at: datetime, reason: str) -> str:
    """The gap every failed or timed-out query leaves in the document."""
    return f"Prometheus unreachable at {at.astimezone(UTC):%Y-%m-%d %H:%M:%SZ}: {reason}"


class PrometheusEvidence:
    """Range queries through prometheus-api-client, with a timeout; a failure becomes a gap, never an exception."""

    def __init__(self, url: str, *, timeout_seconds: float) -> None:
        self.url, self.timeout = url, timeout_seconds

    def gather(
        self, specs: Iterable[QuerySpec], start: datetime, end: datetime, *, now: datetime | None = None,
    ) -> list[SeriesResult]:
        """Each spec's range over [start, end]; once Prometheus is unreachable the rest are gaps at once."""
        step = step_for(start, end)
        results: list[SeriesResult] = []
        down: str | None = None
        # One retry of a failed connect, none of a read that timed out: the client's default (3 with backoff)
        # would hold the activity for many timeouts per query while Prometheus is down or stuck.
        retry = Retry(total=1, read=0, backoff_factor=0.2, status_forcelist=(502, 503, 504))
        with PrometheusConnect(self.url, retry=retry, timeout=self.timeout) as prom:
            for spec in specs:
                result = SeriesResult(spec, step)
                results.append(result)
                if down is not None:
                    result.error = down
                    continue
                try:
                    result.matrix = prom.custom_query_range(spec.promql, start, end, f"{step}s")
                except requests.RequestException as err:  # refused, reset, timed out
                    down = result.error = unreachable(now or datetime.now(UTC), _reason(err))
                except PrometheusApiClientException as err:  # an answer, but not data: a bad query, a 5xx
                    result.error = unreachable(now or datetime.now(UTC), str(err)[:300])
                except ValueError as err:  # an answer that is not Prometheus JSON
                    result.error = unreachable(now or datetime.now(UTC), f"invalid answer: {err}"[:300])
        return results


def _reason(err: requests.RequestException) -> str:
    # Past the retries, requests wraps a read timeout in a ConnectionError: urllib3's reason tells them apart.
    # (urllib3's NewConnectionError, a refused connection, subclasses its ConnectTimeoutError.)
    reason = getattr(err.args[0], "reason", None) if err.args else None
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return "connection failed"
    if isinstance(err, requests.Timeout) or isinstance(reason, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(err, requests.ConnectionError):
        return "connection failed"
    return type(err).__name__


def unique_names(specs: Iterable[QuerySpec]) -> list[QuerySpec]:
    """Drop repeated PromQL (several alerts of one rule) and make the names unique."""
    seen_promql: set[str] = set()
    seen_names: dict[str, int] = {}
    out: list[QuerySpec] = []
    for spec in specs:
        if spec.promql in seen_promql:
            continue
        seen_promql.add(spec.promql)
        n = seen_names.get(spec.name.lower(), 0) + 1
        seen_names[spec.name.lower()] = n
        out.append(spec if n == 1 else QuerySpec(f"{spec.name} ({n})", spec.promql, spec.source, spec.threshold))
    return out
