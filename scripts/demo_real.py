"""Run every example of ``examples/`` on its shared real data set (``make demo-real``).

For ``examples/<dataset>.toml`` the input is ``<data>/cells/<dataset>.cells.csv.gz`` and, when
present, the clinical table ``<data>/cells/<dataset>.patients.csv``; each runs through
``metaniche run`` into ``<out>/<dataset>/`` (report in ``<out>/<dataset>/report/``). Prints
one line per data set (samples, cells, wall time, status) and writes ``<out>/summary.json``.
Exits 0 with a message when the data directory is absent, 1 when any run fails.

Usage: ``python scripts/demo_real.py [--data DIR] [--out DIR] [--workers N] [--only NAME]``
(data directory default: env ``METANICHE_DATA``, else ``../shared/data``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Run the examples; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(
        os.environ.get("METANICHE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--out", type=Path, default=REPO / "demo-real-output")
    parser.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    parser.add_argument("--only", action="append", default=[],
                        help="Run only this data set (repeatable).")
    args = parser.parse_args(argv)
    cells_dir = args.data / "cells"
    if not cells_dir.is_dir():
        print(f"demo-real: skipped, no shared data at {cells_dir} (set METANICHE_DATA).")
        return 0
    examples = sorted((REPO / "examples").glob("*.toml"))
    if args.only:
        examples = [e for e in examples if e.stem in args.only]
    summary = []
    failed = 0
    for example in examples:
        name = example.stem
        cells = cells_dir / f"{name}.cells.csv.gz"
        if not cells.is_file():
            print(f"{name:40s} skipped: {cells} not found")
            continue
        command = [sys.executable, "-m", "metaniche", "run", str(cells), "--out",
                   str(args.out / name), "--config", str(example), "--workers",
                   str(args.workers), "--quiet"]
        clinical = cells_dir / f"{name}.patients.csv"
        if clinical.is_file():
            command += ["--clinical", str(clinical)]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        record = {"dataset": name, "seconds": round(seconds, 1), "exit_code": done.returncode}
        manifest = args.out / name / "run.json"
        if manifest.is_file():
            samples = json.loads(manifest.read_text())["samples"]
            record["samples"] = len(samples)
            record["failed"] = [s for s, r in samples.items() if r["status"] == "failed"]
            times = sorted(r.get("seconds") or 0.0 for r in samples.values())
            record["sample_seconds_median"] = times[len(times) // 2] if times else None
            record["sample_seconds_max"] = times[-1] if times else None
        if done.returncode != 0:
            failed += 1
            record["stderr"] = done.stderr[-2000:]
        summary.append(record)
        status = "ok" if done.returncode == 0 else f"FAILED ({done.returncode})"
        print(f"{name:40s} {record.get('samples', '?'):>5} samples  {seconds:7.1f} s  {status}",
              flush=True)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"reports: {args.out}/<dataset>/report/index.html; summary: {args.out}/summary.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
