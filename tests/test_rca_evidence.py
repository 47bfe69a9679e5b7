"""Metric evidence from a real Prometheus scraping a test exporter: exact values, gaps instead of failures, charts."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import eventually
from tests.prometheus import Exporter, Prometheus, exporter, prometheus  # noqa: F401 - fixtures
from vigil.rca.charts import Marks, render_chart
from vigil.rca.evidence import (
    PrometheusEvidence, QuerySpec, alert_expression, split_threshold, step_for, unique_names, window,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def incident_window() -> tuple[datetime, datetime, datetime, datetime]:
    """started, resolved (now), and the evidence window around them."""
    resolved = datetime.now(UTC)
    started = resolved - timedelta(minutes=2)
    return (started, resolved, *window(started, resolved))


def values(results: list, *, before: datetime | None = None) -> set[float]:  # noqa: ANN001
    """Every value in the gathered series (at steps before `before`, if given)."""
    return {v for r in results for at, v in r.values() if before is None or at < before}


async def test_the_evidence_holds_the_exact_values_the_exporter_served(
    prometheus: Prometheus, exporter: Exporter,
) -> None:
    evidence = PrometheusEvidence(prometheus.url, timeout_seconds=5)
    spec = QuerySpec("checkout error ratio", "checkout_error_ratio", "alert")
    _, _, start, end = incident_window()  # fixed: the steps fall on the same instants in every gather

    def gathered(value: float):  # noqa: ANN202 - the gathered series once `value` is in it
        # A step still ahead of now shows the latest sample, which a later scrape may change: only past steps.
        settled = datetime.now(UTC) - timedelta(seconds=3)
        results = evidence.gather([spec], start, end)
        assert results[0].error is None, results[0].error
        return results if value in values(results, before=settled) else None

    # Each value is held until the evidence itself shows it at one of its steps (no sleeps: a deadline).
    exporter.set(0.25)
    await eventually(lambda: gathered(0.25), timeout=30, interval=0.5)
    exporter.set(0.75)
    results = await eventually(lambda: gathered(0.75), timeout=30, interval=0.5)

    assert values(results) == {0.25, 0.75}
    [series] = results[0].matrix
    assert series["metric"] == {"__name__": "checkout_error_ratio", "instance": f"127.0.0.1:{exporter.port}",
                                "job": "exporter", "service": "checkout"}
    assert results[0].step_seconds == step_for(start, end) == 10


async def test_prometheus_stopped_mid_gather_gives_gaps_not_a_failure(
    prometheus: Prometheus, exporter: Exporter,
) -> None:
    exporter.set(0.5)
    await eventually(lambda: prometheus.scraped(0.5), timeout=30, interval=0.2)
    first = QuerySpec("ratio", "checkout_error_ratio", "alert")
    later = [QuerySpec("up", "up", "service"), QuerySpec("twice", "2 * checkout_error_ratio", "service")]

    def specs() -> Iterator[QuerySpec]:
        yield first
        prometheus.stop()  # between the first query and the next ones
        yield from later

    _, _, start, end = incident_window()
    stopped_at = datetime.now(UTC).replace(microsecond=0)
    results = PrometheusEvidence(prometheus.url, timeout_seconds=5).gather(specs(), start, end)

    assert [r.spec for r in results] == [first, *later]
    assert results[0].error is None and 0.5 in values(results[:1])
    for gap in results[1:]:
        assert gap.matrix == [] and gap.error is not None
        assert gap.error.startswith("Prometheus unreachable at ") and gap.error.endswith(": connection failed")
        at = datetime.strptime(gap.error.split(" at ")[1][:20], "%Y-%m-%d %H:%M:%SZ").replace(tzinfo=UTC)
        assert stopped_at <= at <= datetime.now(UTC)


async def test_a_prometheus_that_never_answers_times_out_into_a_gap() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        _, _, start, end = incident_window()
        [result] = PrometheusEvidence(url, timeout_seconds=0.5).gather([QuerySpec("x", "up", "alert")], start, end)
    assert result.error is not None and result.error.endswith(": timed out"), result.error


async def test_a_bad_query_is_a_gap_and_the_next_query_still_runs(prometheus: Prometheus, exporter: Exporter) -> None:
    exporter.set(0.5)
    await eventually(lambda: prometheus.scraped(0.5), timeout=30, interval=0.2)
    _, _, start, end = incident_window()
    bad, good = PrometheusEvidence(prometheus.url, timeout_seconds=5).gather(
        [QuerySpec("bad", "rate(", "service"), QuerySpec("good", "checkout_error_ratio", "service")], start, end,
    )
    assert bad.error is not None and "HTTP Status Code 400" in bad.error
    assert good.error is None and 0.5 in values([good])


async def test_the_chart_is_a_png_of_the_expected_size(prometheus: Prometheus, exporter: Exporter) -> None:
    exporter.set(0.9)
    await eventually(lambda: prometheus.scraped(0.9), timeout=30, interval=0.2)
    started, resolved, start, end = incident_window()
    promql, threshold = split_threshold("checkout_error_ratio > 0.5")
    [result] = PrometheusEvidence(prometheus.url, timeout_seconds=5).gather(
        [QuerySpec("checkout error ratio", promql, "alert", threshold)], start, end,
    )
    png = render_chart(result, Marks(started, resolved, started + timedelta(seconds=30)), start=start, end=end)
    assert png[:8] == PNG_SIGNATURE
    # The IHDR chunk comes first: its width and height are the 4-byte big-endian integers at offset 16.
    assert png[12:16] == b"IHDR" and struct.unpack(">II", png[16:24]) == (1000, 400)


def test_the_alert_expression_comes_from_the_generator_url() -> None:
    url = "http://prometheus:9090/graph?g0.expr=rate%28errors_total%5B5m%5D%29+%3E+0.05&g0.tab=1"
    assert alert_expression(url) == "rate(errors_total[5m]) > 0.05"
    assert alert_expression("https://example.com/alerts/42") is None
    assert alert_expression(None) is None


@pytest.mark.parametrize(("expr", "query", "threshold"), [
    ("rate(errors_total[5m]) > 0.05", "rate(errors_total[5m])", 0.05),
    ('sum by (job) (rate(x{code=~"5.."}[5m])) / sum(rate(x[5m])) >= 1e-2',
     'sum by (job) (rate(x{code=~"5.."}[5m])) / sum(rate(x[5m]))', 0.01),
    ("up == 0", "up", 0.0),
    ('x{le=">3"} < 3', 'x{le=">3"}', 3.0),
    ("x > bool 1", "x > bool 1", None),
    ("a > 1 and b < 2", "a > 1 and b < 2", None),
    ("x != 3", "x != 3", None),
    ("rate(errors_total[5m])", "rate(errors_total[5m])", None),
])
def test_the_threshold_is_parsed_when_the_expression_has_one(expr: str, query: str, threshold: float | None) -> None:
    assert split_threshold(expr) == (query, threshold)


def test_the_step_adapts_to_the_window() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for minutes, step in ((45, 10), (105, 15), (345, 60), (1485, 300), (10045, 1800)):
        end = start + timedelta(minutes=minutes)
        assert step_for(start, end) == step
        assert 200 <= minutes * 60 / step <= 500


def test_repeated_queries_collapse_and_names_stay_unique() -> None:
    specs = unique_names([
        QuerySpec("HighErrorRate", "x > 1", "alert"), QuerySpec("HighErrorRate", "x > 1", "alert"),
        QuerySpec("HighErrorRate", "y > 1", "alert"),
    ])
    assert [s.name for s in specs] == ["HighErrorRate", "HighErrorRate (2)"]
