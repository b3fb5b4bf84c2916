"""What a run leaves behind: the RESULT lines' keys, the table, the chart, the JSON file."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import load
from bench.workloads import WORKLOADS

RESULTS_DIR = load.BENCH_DIR / "results"

RESULT_KEYS = (
    "backend",
    "workload",
    "scale",
    "api_codes_per_s",
    "raw_codes_per_s",
    "ratio",
    "p50_ms",
    "p99_ms",
    "server_rss_mb",
    "limit_codes_per_s",
    "limit_ratio",
)


def print_table(results: Sequence[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="revoke: HTTP service vs raw database limit")
    columns = (
        "backend", "workload", "scale", "api_codes_per_s", "raw_codes_per_s", "ratio",
        "p50_ms", "p99_ms", "raw_p50_ms", "limit_codes_per_s", "limit_ratio", "limit_p50_ms",
        "server_rss_mb", "api_requests", "api_errors",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in RESULT_KEYS[:3] else "right")
    for result in results:
        table.add_row(*(str(result.get(c, "")) for c in columns))
    Console(width=200).print(table)


def chart(results: Sequence[dict[str, Any]], path: Path) -> None:
    """Throughput (HTTP and raw) and HTTP p99 against scale, one column per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [w for w in WORKLOADS if any(r["workload"] == w for r in results)]
    fig, axes = plt.subplots(2, len(workloads), figsize=(5 * len(workloads), 7), squeeze=False)
    colours = {"sqlite": "tab:blue", "postgresql": "tab:orange"}
    for col, workload in enumerate(workloads):
        top, bottom = axes[0][col], axes[1][col]
        for backend in ("sqlite", "postgresql"):
            rows = [r for r in results if r["workload"] == workload and r["backend"] == backend]
            rows.sort(key=lambda r: load.scale_count(r["scale"]))
            if not rows:
                continue
            xs = [load.scale_count(r["scale"]) for r in rows]
            colour = colours[backend]
            top.plot(xs, [r["api_codes_per_s"] for r in rows], "o-", color=colour,
                     label=f"{backend} HTTP")  # fmt: skip
            top.plot(xs, [r["raw_codes_per_s"] for r in rows], "s--", color=colour,
                     label=f"{backend} raw")  # fmt: skip
            bottom.plot(xs, [r["p99_ms"] for r in rows], "o-", color=colour,
                        label=f"{backend} p99")  # fmt: skip
            bottom.plot(xs, [r["p50_ms"] for r in rows], "x:", color=colour,
                        label=f"{backend} p50")  # fmt: skip
        top.set_title(f"{workload}: revoked codes/s")
        bottom.set_title(f"{workload}: HTTP latency (ms)")
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.set_xlabel("coupons in database")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        top.set_ylim(bottom=0)
        bottom.set_ylim(bottom=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def save_results(kind: str, results: Sequence[dict[str, Any]]) -> Path:
    """Keep a run's results as `bench/results/<kind>-<time>.json`."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    return path
