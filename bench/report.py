"""Turning a run's raw outcomes into numbers people and machines read: HDR percentiles, a table,
JSON, and matplotlib plots (latency CDF per server, throughput against concurrency)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from .loadgen import RunStats

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
CDF_POINTS = (0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100)


def histogram(stats: RunStats) -> HdrHistogram:
    hist = HdrHistogram(1, 3_600_000_000, 3)  # 1 µs .. 1 h, 3 significant digits
    for value in stats.latencies_us:
        hist.record_value(max(1, value))
    return hist


def summarize(stats: RunStats, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    hist = histogram(stats)
    ok = sum(n for status, n in stats.statuses.items() if isinstance(status, int) and 200 <= status < 300)
    count = hist.get_total_count()
    summary = {
        **(meta or {}),
        "requests": count,
        "duration_s": round(stats.elapsed, 3),
        "requests_per_s": round(count / stats.elapsed, 1),
        "ok_per_s": round(ok / stats.elapsed, 1),
        "statuses": {("unsent" if k == 0 else str(k)): v for k, v in sorted(stats.statuses.items())},
        "errors": dict(stats.errors),
        "latency_ms": {},
        "cdf_ms": {},
    }
    if count:
        for p in PERCENTILES:
            summary["latency_ms"][f"p{p:g}"] = hist.get_value_at_percentile(p) / 1000
        summary["latency_ms"]["max"] = hist.get_max_value() / 1000
        summary["latency_ms"]["mean"] = round(hist.get_mean_value() / 1000, 3)
        summary["cdf_ms"] = {f"{p:g}": hist.get_value_at_percentile(p) / 1000 for p in CDF_POINTS}
    return summary


def table(rows: list[dict[str, Any]], label: str = "run") -> str:
    head = ["", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "non-2xx", "errors"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for row in rows:
        lat = row["latency_ms"]
        non_ok = sum(v for k, v in row["statuses"].items() if not k.startswith("2"))
        lines.append(" | ".join([
            str(row.get(label, "")), f"{row['requests_per_s']:,.0f}",
            *(f"{lat.get(k, float('nan')):.2f}" for k in ("p50", "p90", "p99", "p99.9", "max")),
            str(non_ok), str(sum(row["errors"].values())),
        ]))
    return "\n".join("| " + line + " |" for line in lines)


def plot_cdf(rows: list[dict[str, Any]], path: Path, label: str = "run", title: str = "latency CDF"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        cdf = row.get("cdf_ms") or {}
        if cdf:
            ax.plot(list(cdf.values()), [float(p) for p in cdf], marker=".", label=str(row.get(label, "")))
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("percentile")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(rows: list[dict[str, Any]], path: Path, series: str = "server",
                    title: str = "throughput vs concurrency"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    by_series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        by_series.setdefault(str(row.get(series, "")), []).append((row["concurrency"], row["requests_per_s"]))
    for name, points in by_series.items():
        points.sort()
        ax.plot([c for c, _ in points], [r for _, r in points], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")  # references like nginx sit orders of magnitude above model servers
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}")
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_formatter(plain)
    ax.set_xlabel("concurrent connections")
    ax.set_ylabel("requests / s (log scale)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save(stem, meta: dict[str, Any], rows: Any, markdown: str) -> None:
    """``stem``.json (meta and rows) and ``stem``.md; the markdown is printed too."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    print(markdown)
