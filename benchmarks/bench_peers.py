"""Benchmark: metaniche beside squidpy and scimap on the same synthetic tissue, same run.

One tissue file per size (``peers/make_tissue.py``: liver-like tissue from
``metaniche.simulate``, ~3,000 cells/mm², 10 cell types) is read by every runner; each
(tool, step, size) runs in a fresh process (``peers/run_<tool>.py``) that prints wall seconds of
the call alone (Numba warmed up on 1,000 cells first) and the peak resident memory the call
added (see ``peers/_protocol.py``). squidpy and scimap cannot share an environment, and neither
has metaniche installed: they run from ``.venv-squidpy`` / ``.venv-scimap`` (``make
peers-env``); a missing venv is skipped with a note. ``time_ratio`` and ``mem_ratio`` are
metaniche / peer (< 1: metaniche is faster / smaller).

Usage: ``python benchmarks/bench_peers.py [--sizes 10000 100000] [--with-1m] [--timeout S]
[--only SUBSTRING ...] [--output NAME]``. ``--only`` keeps the statistics whose name contains
one of the substrings (e.g. ``--only nearest "count within" "1000 perms"``); ``--output``
names the results file (default ``peers``, i.e. ``benchmarks/results/peers.json``, the
comparison rows plus every raw run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import RESULTS, write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers"
SIZES = (10_000, 100_000)
TIMEOUT_S = 600.0

#: Python of each tool; peers run from their own venv (``make peers-env``).
PYTHONS = {"metaniche": Path(sys.executable),
           "squidpy": ROOT / ".venv-squidpy" / "bin" / "python",
           "scimap": ROOT / ".venv-scimap" / "bin" / "python"}

#: (shared statistic, metaniche step, peer tool, peer step).
PAIRS: tuple[tuple[str, str, str, str], ...] = (
    ("radius graph 30 µm", "radius_graph", "squidpy", "spatial_neighbors"),
    ("nhood enrichment (ours exact)", "enrichment_exact", "squidpy", "nhood_enrichment"),
    ("nhood enrichment (both 1000 perms)", "enrichment_perm1000", "squidpy",
     "nhood_enrichment"),
    ("interaction 30 µm (ours exact)", "enrichment_exact", "scimap", "spatial_interaction"),
    ("interaction 30 µm (both 1000 perms)", "enrichment_perm1000", "scimap",
     "spatial_interaction"),
    ("co-occurrence 10 bins to 100 µm", "co_occurrence", "squidpy", "co_occurrence"),
    ("nearest distance to each type", "nearest_distance", "scimap", "spatial_distance"),
    ("count within 30 µm", "count_within", "scimap", "spatial_count"),
    ("kNN composition k=10", "knn_composition", "scimap", "spatial_count_knn"),
    # The notebook API (mn.tl on an AnnData) beside the squidpy call computing the same thing.
    ("mn.tl.nhood_enrichment (ours exact)", "tl_nhood_enrichment_exact", "squidpy",
     "graph_nhood_enrichment"),
    ("mn.tl.nhood_enrichment (both 1000 perms)", "tl_nhood_enrichment_perm1000", "squidpy",
     "graph_nhood_enrichment"),
    ("mn.tl.nhood_enrichment after mn.tl.compartments (ours exact)",
     "tl_nhood_enrichment_exact_after_compartments", "squidpy", "graph_nhood_enrichment"),
    ("mn.tl.compartments (no squidpy counterpart; shown beside its nhood_enrichment)",
     "tl_compartments", "squidpy", "graph_nhood_enrichment"),
    ("mn.tl.co_occurrence", "tl_co_occurrence", "squidpy", "co_occurrence"),
    ("mn.tl.ripley (ours all pairs, squidpy per type)", "tl_ripley", "squidpy", "ripley"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--with-1m", action="store_true", help="add a 1,000,000-cell tissue")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S,
                        help="seconds before one step is stopped and reported as a timeout")
    parser.add_argument("--only", nargs="+", default=None, metavar="SUBSTRING",
                        help="run only statistics whose name contains one of these")
    parser.add_argument("--output", default="peers", help="results file name (no .json)")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.sizes) | ({1_000_000} if args.with_1m else set()))
    pairs = [p for p in PAIRS if args.only is None or any(s in p[0] for s in args.only)]
    available = {tool: importable(tool) for tool in PYTHONS}
    for tool, ok in available.items():
        if not ok:
            print(f"{tool}: {PYTHONS[tool]} missing or cannot import {tool}; skipped. "
                  "Create it with `make peers-env`.")
    runs: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="metaniche-peers-") as tmp:
        for n_cells in sizes:
            tissue = Path(tmp) / f"tissue_{n_cells}.npz"
            subprocess.run([sys.executable, str(PEERS / "make_tissue.py"), str(tissue),
                            str(n_cells)], check=True)
            done: dict[tuple[str, str], dict[str, Any]] = {}

            def timed(tool: str, step: str, tissue=tissue, done=done, n_cells=n_cells):
                if (tool, step) not in done:
                    record = (run_one(tool, step, tissue, args.timeout) if available[tool]
                              else skipped(tool, step, "not installed: make peers-env"))
                    record["requested_cells"] = n_cells
                    done[tool, step] = record
                    runs.append(record)
                return done[tool, step]

            for statistic, ours, peer, peer_step in pairs:
                rows.append(compare(statistic, n_cells, timed("metaniche", ours),
                                    timed(peer, peer_step)))
    path = write_results(args.output, rows)
    payload = json.loads(path.read_text())
    payload["runs"] = runs
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path.relative_to(RESULTS.parent.parent)}")
    return 0


def importable(tool: str) -> bool:
    """Whether the tool's Python exists and imports the tool."""
    python = PYTHONS[tool]
    if not python.exists():
        return False
    return subprocess.run([str(python), "-c", f"import {tool}"], capture_output=True,
                          cwd=PEERS).returncode == 0


def run_one(tool: str, step: str, tissue: Path, timeout: float) -> dict[str, Any]:
    """Run ``peers/run_<tool>.py --step`` in a fresh process of the tool's venv."""
    command = [str(PYTHONS[tool]), str(PEERS / f"run_{tool}.py"), "--input", str(tissue),
               "--step", step]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              cwd=PEERS)
    except subprocess.TimeoutExpired:
        return skipped(tool, step, f"timeout > {timeout:.0f} s", status="timeout")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return skipped(tool, step, f"exit {done.returncode}: {tail[0][:200]}", status="error")
    return json.loads(lines[-1])


def skipped(tool: str, step: str, why: str, status: str = "skipped") -> dict[str, Any]:
    """A run record that has no measurement."""
    return {"tool": tool, "step": step, "seconds": None, "peak_mib": None, "status": status,
            "error": why}


def compare(statistic: str, n_cells: int, ours: dict[str, Any],
            peer: dict[str, Any]) -> dict[str, Any]:
    """One table row: both measurements and the metaniche / peer ratios."""
    def ratio(key: str) -> float:
        a, b = ours.get(key), peer.get(key)
        return a / b if a is not None and b else float("nan")

    note = "; ".join(f"{r['tool']}: {r.get('error')}" for r in (ours, peer)
                     if r.get("status") != "ok")
    return {"statistic": statistic, "n_cells": ours.get("n_cells", n_cells),
            "peer": f"{peer['tool']}.{peer['step']}",
            "metaniche_s": _num(ours.get("seconds")), "peer_s": _num(peer.get("seconds")),
            "time_ratio": ratio("seconds"),
            "metaniche_mib": _num(ours.get("peak_mib")), "peer_mib": _num(peer.get("peak_mib")),
            "mem_ratio": ratio("peak_mib"), "note": note or "-"}


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


if __name__ == "__main__":
    sys.exit(main())
