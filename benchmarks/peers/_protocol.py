"""Protocol shared by every peer runner: the tissue file, timing with peak memory, JSON out.

Runners execute in three different virtual environments (ours, squidpy's, scimap's), so this
module needs only the standard library and NumPy, and is imported from its own directory.

Tissue file (``.npz``, written by ``make_tissue.py`` in the main venv): ``x_um``, ``y_um``
(float64), ``type_code`` (int64, index into ``type_names``) and ``type_names`` (sorted str).

Each runner is invoked once per step (a fresh process), prints ONE JSON line::

    {"tool": ..., "version": ..., "step": ..., "n_cells": ..., "seconds": ..., "peak_mib": ...,
     "status": "ok" | "error", "error": ...}

``seconds`` is the wall time of the call alone: inputs (AnnData, graphs the call consumes) are
built before the clock starts, and the call is first run once on a 1,000-cell subsample so
Numba compilation is excluded. ``peak_mib`` is the rise of the process's peak resident set
(VmHWM, reset via ``/proc/self/clear_refs`` just before the call) over its resident set before
the call: memory the call itself allocated, whatever allocator it used (NumPy, Numba, C).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

WARMUP_CELLS = 1_000

Tissue = dict[str, np.ndarray]
Setup = Callable[[Tissue], Callable[[], Any]]


def load_tissue(path: str | Path) -> Tissue:
    """Read the shared tissue ``.npz`` into plain arrays."""
    with np.load(path, allow_pickle=False) as data:
        return {"x_um": data["x_um"], "y_um": data["y_um"],
                "type_code": data["type_code"].astype(np.int64),
                "type_names": np.asarray(data["type_names"]).astype(str)}


def subsample(tissue: Tissue, n: int) -> Tissue:
    """The first ``n`` cells (tissue files are shuffled, so this is a random subsample)."""
    return {**{k: tissue[k][:n] for k in ("x_um", "y_um", "type_code")},
            "type_names": tissue["type_names"]}


def _status_kib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def measure(func: Callable[[], Any]) -> tuple[float, float]:
    """Wall seconds and peak extra resident MiB of ``func()`` (see module docstring)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    before = _status_kib("VmRSS")
    started = time.perf_counter()
    func()
    seconds = time.perf_counter() - started
    peak = _status_kib("VmHWM")
    return seconds, max(peak - before, 0.0) / 1024


def run_step(tool: str, version: str, steps: dict[str, Setup], argv: list[str] | None = None,
             ) -> int:
    """Command line of a runner: ``--input TISSUE --step NAME``; prints one JSON line."""
    parser = argparse.ArgumentParser(description=f"Time one {tool} step on a tissue file.")
    parser.add_argument("--input", required=True, help="tissue .npz (make_tissue.py)")
    parser.add_argument("--step", required=True, choices=sorted(steps))
    parser.add_argument("--no-warmup", action="store_true")
    args = parser.parse_args(argv)
    tissue = load_tissue(args.input)
    record: dict[str, Any] = {"tool": tool, "version": version, "step": args.step,
                              "n_cells": len(tissue["x_um"])}
    try:
        if not args.no_warmup:
            steps[args.step](subsample(tissue, WARMUP_CELLS))()
        call = steps[args.step](tissue)
        seconds, peak_mib = measure(call)
        record.update(seconds=seconds, peak_mib=peak_mib, status="ok")
    except Exception as error:  # a peer failing is a result to report, not a crash
        traceback.print_exc(file=sys.stderr)
        record.update(seconds=None, peak_mib=None, status="error",
                      error=f"{type(error).__name__}: {error}"[:300])
    print(json.dumps(record), flush=True)
    return 0
