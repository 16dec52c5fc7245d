"""Benchmark: Numba's first compilation of every kernel, and a first run against a warm one.

A new install has no Numba cache, so the first run of ``metaniche`` compiles every kernel it
reaches once per worker process (``cache=True`` then keeps the machine code in
``__pycache__`` for later runs). Each row here is one kernel's public entry, called on a small
input in a fresh process with an empty cache (``NUMBA_CACHE_DIR`` pointing at a new temporary
directory): ``first_call_s`` is the first call minus the second call on the same input, i.e.
compilation (typing, lowering, LLVM) without the run. Numba's own start-up is paid before the
clock starts, by compiling a trivial function.

``--demo`` also times ``metaniche demo`` twice into fresh output directories: once with an
empty cache (what the first run after installing costs) and once with the cache it filled.

Usage: ``python benchmarks/bench_compile.py [--demo]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_results

REPO = Path(__file__).resolve().parents[1]

_SETUP = """
import time
import numpy as np
import numba

@numba.njit
def _start(a):
    return a + 1

_start(1)
rng = np.random.default_rng(0)
xy = rng.random((2000, 2)) * 500
x, y = xy[:, 0].copy(), xy[:, 1].copy()
codes = rng.integers(0, 3, 2000)
radii = np.array([5.0, 10.0, 20.0])
"""

#: name -> (import line, call on the setup's small input)
ENTRIES: dict[str, tuple[str, str]] = {
    "nearest other cell (_nearest)": (
        "from metaniche.analyses._nearest import nearest_other_distance",
        "nearest_other_distance(x, y, np.arange(10))"),
    "nearest cell of each type (_grid)": (
        "from metaniche.analyses.relations._grid import nearest_by_type_grid",
        "nearest_by_type_grid(xy, codes, 3, np.ones(3, bool))"),
    "counts within radii (_grid)": (
        "from metaniche.analyses.relations._grid import counts_within_by_type_grid",
        "counts_within_by_type_grid(xy, codes, 3, radii)"),
    "pair binning (_pairbins)": (
        "from metaniche.analyses.relations._pairbins import bin_pairs_within",
        "bin_pairs_within(xy, codes, 3, radii)"),
    "isotropic K (isotropic)": (
        "from metaniche.analyses.relations.isotropic import Rectangle, "
        "ripley_cross_isotropic",
        "ripley_cross_isotropic(xy, codes, 3, Rectangle(0.0, 0.0, 500.0, 500.0), radii)"),
    "permutation enrichment (_permute)": (
        "from metaniche.analyses.relations._permute import permutation_exceedances",
        "permutation_exceedances(np.column_stack([np.arange(1999), np.arange(1, 2000)]), "
        "codes, 3, [np.arange(2000)], 0, 20, np.ones((3, 3)), np.ones((3, 3)))"),
    "Delaunay walk (_walk)": (
        "from metaniche.analyses.relations._walk import delaunay_neighbours, "
        "nearest_target_by_walk",
        "nearest_target_by_walk(xy[:500], delaunay_neighbours(xy[:500]), xy[500:])"),
    "disc morphology (_rowruns)": (
        "from metaniche.analyses._raster import _disc_by_rows",
        "_disc_by_rows(rng.random((200, 300)) > 0.5, 3.0, erode=False)"),
    "Gaussian smoothing (_smoothing)": (
        "from metaniche.analyses._smoothing import gaussian_smooth",
        "gaussian_smooth(rng.random((200, 300)).astype(np.float32), 3.0)"),
    "distance transform (_edt)": (
        "from metaniche.analyses._edt import distance_and_label",
        "distance_and_label((rng.random((200, 300)) > 0.99).astype(np.int32), 2.0)"),
    "contact counts (contact)": (
        "from metaniche.analyses.contact import counts_within",
        "counts_within(xy, codes, 3, 20.0)"),
    "contact shuffle null (contact)": (
        "from metaniche.analyses.contact import _shuffle_fill",
        "_shuffle_fill(codes.astype(np.uint8), 1, np.arange(11), np.arange(10), "
        "np.array([0, 1, 2, 3]), np.zeros((10, 4))[:, :3], np.zeros(3))"),
    "contact shift null (contact)": (
        "from metaniche.analyses.contact import _shift_fill",
        "_shift_fill(x[:10], y[:10], 1.0, 2.0, np.column_stack([x, y, codes.astype(float)]), "
        "np.array([0, 2000]), 1, 1, 0.0, 0.0, 600.0, 20.0, np.zeros((10, 4))[:, :3], "
        "np.zeros(3))"),
}


def first_call_seconds(import_line: str, call: str) -> float:
    """First call minus second call (s), in a fresh process with an empty Numba cache."""
    code = (_SETUP + import_line + "\n"
            + f"t = time.perf_counter()\n{call}\nfirst = time.perf_counter() - t\n"
            + f"t = time.perf_counter()\n{call}\nsecond = time.perf_counter() - t\n"
            + "print(first - second)\n")
    with tempfile.TemporaryDirectory() as cache:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=REPO, env={**os.environ, "NUMBA_CACHE_DIR": cache},
                              check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{import_line}: {done.stderr.strip().splitlines()[-1]}")
    return float(done.stdout.strip().splitlines()[-1])


def demo_seconds(cache: str) -> float:
    """Wall seconds of ``metaniche demo`` into a fresh directory, with ``cache``."""
    metaniche = Path(sys.executable).with_name("metaniche")
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run([str(metaniche), "demo", "--out", str(Path(out) / "demo")], cwd=REPO,
                       env={**os.environ, "NUMBA_CACHE_DIR": cache}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="also time metaniche demo")
    args = parser.parse_args()
    rows: list[dict] = []
    for name, (import_line, call) in ENTRIES.items():
        rows.append({"kernel": name, "first_call_s": round(first_call_seconds(import_line,
                                                                             call), 2)})
    rows.append({"kernel": "all of the above",
                 "first_call_s": round(sum(r["first_call_s"] for r in rows), 2)})
    if args.demo:
        with tempfile.TemporaryDirectory() as cache:
            rows.append({"kernel": "metaniche demo, empty cache",
                         "first_call_s": round(demo_seconds(cache), 1)})
            rows.append({"kernel": "metaniche demo, warm cache",
                         "first_call_s": round(demo_seconds(cache), 1)})
    write_results("compile", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
