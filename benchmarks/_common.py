"""Shared benchmark helpers: timing with peak memory, result tables written to results/."""

from __future__ import annotations

import json
import platform
import resource
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def measure(func: Callable[[], Any], trace_memory: bool = True) -> tuple[float, float, Any]:
    """Wall seconds and peak Python-heap MiB (tracemalloc: NumPy allocations included)."""
    if trace_memory:
        tracemalloc.start()
    started = time.perf_counter()
    value = func()
    seconds = time.perf_counter() - started
    peak_mib = 0.0
    if trace_memory:
        peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return seconds, peak_mib, value


def process_peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_results(name: str, rows: list[dict[str, Any]]) -> Path:
    """Print rows as a table and write them with machine info to results/<name>.json."""
    if rows:
        keys = list(rows[0])
        widths = [max(len(k), *(len(_fmt(r[k])) for r in rows)) for k in keys]
        print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
        for row in rows:
            print("  ".join(_fmt(row[k]).ljust(w) for k, w in zip(keys, widths, strict=True)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": platform.platform(), "python": platform.python_version(),
               "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": rows}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
