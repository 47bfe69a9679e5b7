"""Charts of evidence series as PNG: the incident window shaded, acknowledge and resolve marked, the threshold drawn."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import matplotlib

matplotlib.use("Agg")  # no display on a worker; set before anything imports pyplot

from matplotlib.dates import AutoDateLocator, ConciseDateFormatter  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vigil.rca.evidence import SeriesResult  # noqa: E402

# 1000 x 400 pixels: wide enough for a day of 5-minute points, and fits an A4 page of the PDF.
WIDTH_IN, HEIGHT_IN, DPI = 10, 4, 100
MAX_LEGEND = 8


@dataclass(frozen=True)
class Marks:
    """The incident's moments drawn on every chart."""

    started_at: datetime
    resolved_at: datetime
    acknowledged_at: datetime | None = None


def render_chart(result: SeriesResult, marks: Marks, *, start: datetime, end: datetime) -> bytes:
    """One PNG of the series' lines over [start, end]."""
    # The OO Figure API, never pyplot: pyplot keeps global state, and activities render on a thread pool.
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for i, series in enumerate(result.matrix):
        points = sorted((float(t), float(v)) for t, v in series["values"])
        times = [datetime.fromtimestamp(t, start.tzinfo) for t, _ in points]
        label = _label(series.get("metric", {})) if i < MAX_LEGEND else None
        ax.plot(times, [v for _, v in points], linewidth=1.4, label=label)
    ax.axvspan(marks.started_at, marks.resolved_at, color="tab:red", alpha=0.08, label="incident")
    if marks.acknowledged_at is not None:
        ax.axvline(marks.acknowledged_at, color="tab:orange", linestyle="--", linewidth=1, label="acknowledged")
    ax.axvline(marks.resolved_at, color="tab:green", linestyle="--", linewidth=1, label="resolved")
    if result.spec.threshold is not None:
        ax.axhline(result.spec.threshold, color="tab:red", linewidth=1, label=f"threshold {result.spec.threshold:g}")
    if not result.matrix:
        ax.text(0.5, 0.5, result.error or "no data in this window", transform=ax.transAxes, ha="center",
                va="center", wrap=True, color="dimgray")
    ax.set_xlim(start, end)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=start.tzinfo))
    ax.set_title(f"{result.spec.name}  ({result.spec.promql})"[:140], fontsize=10, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def _label(metric: dict[str, str]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in sorted(metric.items()) if k != "__name__")
    return (text or metric.get("__name__", "value"))[:60]
