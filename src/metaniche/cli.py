"""Command line: parses arguments and calls the library; errors are printed, not raised.

Exit codes (:data:`EXIT_CODES`): 0 everything succeeded; 1 a sample or a run-level step
failed, or a run-level output could not be written (``validate``: an input has an error);
2 a usage error (unknown command or option, missing argument, bad ``--out`` or
``--scheduler``, an ``--out`` another run is using) or a configuration error. ``run`` prints
every failed sample and step on stderr, one line each, at the end. A usage error
prints the usage and one line naming the problem, never a traceback.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from metaniche import __version__
from metaniche.config import load_config
from metaniche.errors import ConfigError, MetanicheError
from metaniche.progress import ProgressEvent

#: Exit codes of every command, documented in ``metaniche --help``.
EXIT_CODES = {0: "everything succeeded",
              1: "a sample or a run-level step failed (validate: an input has an error)",
              2: "usage or configuration error"}

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Spatial immune architecture of tumours from single-cell spatial data.\n\n"
         "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())
         + ".")
_err = Console(stderr=True, highlight=False)
_out = Console(highlight=False)

ConfigOption = Annotated[Path | None, typer.Option("--config", help="TOML configuration file.")]
FormatOption = Annotated[str | None, typer.Option(
    "--format", help="Input format: auto (default, from the file's columns), table, inform, "
    "halo, codex, cellprofiler, mcmicro, scimap, squidpy, spatialdata.")]


def _print_version(value: bool) -> None:
    if value:
        _out.print(f"metaniche {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main_options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False,
) -> None:
    """Spatial immune architecture of tumours from single-cell spatial data."""


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the cohort to.")],
    samples: Annotated[int, typer.Option("--samples", min=1, help="Number of samples.")] = 6,
    cells: Annotated[int, typer.Option("--cells", min=2000, help="Cells per sample.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    program: Annotated[str | None, typer.Option(
        "--program", help="Remodeling program: simulate --samples patients before and after "
        "treatment (slides <patient>_pre/_post, clinical table patient, timepoint, response; "
        "truth/remodel_patients.csv). See `metaniche power --help` for the programs.")] = None,
    effect: Annotated[float, typer.Option(
        "--effect", help="With --program: fold change of the program's quantity "
                         "(1.0 = none).")] = 1.5,
    shift_um: Annotated[float, typer.Option(
        "--shift-um", help="With --program cd8_core_infiltration: border→core shift, µm.")]
    = 0.0,
    shrinkage_um: Annotated[float, typer.Option(
        "--shrinkage-um", help="With --program: lesion shrinkage of responders, µm.")] = 0.0,
) -> None:
    """Simulate a liver-metastasis cohort with ground truth written beside it."""
    from metaniche.simulate import simulate_cohort, write_cohort

    if program is not None:
        _simulate_remodel(out, samples, cells, seed, program, effect, shift_um, shrinkage_um)
        return
    cohort, clinical = simulate_cohort(n_samples=samples, n_cells=cells, seed=seed)
    write_cohort(out, cohort, clinical)
    _out.print(f"wrote {samples} simulated samples to {out}")


def _simulate_remodel(out: Path, patients: int, cells: int, seed: int, program: str,
                      effect: float, shift_um: float, shrinkage_um: float) -> None:
    """``simulate --program``: a pre/post cohort (usage errors exit 2)."""
    from metaniche.studies.programs import PROGRAMS

    if program not in PROGRAMS:
        raise typer.BadParameter(f"must be one of {', '.join(PROGRAMS)}; got {program!r}.",
                                 param_hint="--program")
    if not (math.isfinite(effect) and effect > 0):
        raise typer.BadParameter(f"must be a positive number; got {effect:g}.",
                                 param_hint="--effect")
    from metaniche.studies.remodel import (
        RemodelParams,
        simulate_remodel_cohort,
        write_remodel_cohort,
    )

    params = RemodelParams(n_cells=cells, shift_um=shift_um, shrinkage_um=shrinkage_um)
    cohort = simulate_remodel_cohort(patients, program, effect, params, seed=seed)
    write_remodel_cohort(out, cohort)
    _out.print(f"wrote {patients} patients × 2 time points ({program} ×{effect:g}) to {out}")


@app.command()
def validate(
    inputs: Annotated[list[Path] | None, typer.Argument(
        help="Cell-table files or folders (none: check only --config).")] = None,
    config: ConfigOption = None,
    um_per_unit: Annotated[float | None, typer.Option(help="µm per coordinate unit.")] = None,
    input_format: FormatOption = None,
    clinical: Annotated[Path | None, typer.Option(
        help="Clinical table (CSV/Parquet) to check as well, as `run --clinical` reads it.")]
    = None,
) -> None:
    """Check the configuration, then the inputs and the clinical table; print every problem,
    one per line.

    Exit 2 when the configuration has a bad value (before any cell is read), 1 when an
    input or the clinical table has an error, 0 otherwise.
    """
    if not inputs and config is None and clinical is None:
        raise typer.BadParameter("give cell-table files or folders, --clinical, or --config to "
                                 "check a configuration file alone.", param_hint="INPUTS")
    try:
        cfg = load_config(config, um_per_unit=um_per_unit, format=input_format)
    except ConfigError as err:
        lines = str(err).splitlines()
        for line in lines:
            _out.print(f"[red]error[/red]: {escape(line)}", markup=True, soft_wrap=True)
        _out.print(f"{len(lines)} configuration error{'s' if len(lines) != 1 else ''}; "
                   f"inputs not checked", soft_wrap=True)
        raise typer.Exit(ConfigError.exit_code) from None
    if not inputs and clinical is None:
        _out.print(f"configuration {config}: 0 errors", markup=False, soft_wrap=True)
        raise typer.Exit(0)
    from metaniche.io import validate_clinical, validate_inputs

    if inputs:
        problems = validate_inputs(inputs, cfg, clinical=clinical)
    else:
        assert clinical is not None  # neither inputs nor clinical exited above
        problems = validate_clinical(clinical, cfg)
    errors = [p for p in problems if p.severity == "error"]
    for problem in problems:
        style = "red" if problem.severity == "error" else "yellow"
        _out.print(f"[{style}]{problem.severity}[/{style}]: {escape(problem.message)}",
                   markup=True, soft_wrap=True)
    _out.print(f"{len(errors)} errors, {len(problems) - len(errors)} warnings")
    raise typer.Exit(1 if errors else 0)


@app.command()
def run(
    inputs: Annotated[list[Path], typer.Argument(help="Cell-table files or folders.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory to write.")],
    config: ConfigOption = None,
    clinical: Annotated[Path | None, typer.Option(help="Clinical table (CSV/Parquet).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Local worker processes.")] = 1,
    scheduler: Annotated[str | None, typer.Option(
        help="Dask scheduler address (tcp://host:port) to run samples on.")] = None,
    force: Annotated[bool, typer.Option(help="Recompute samples even if unchanged.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    input_format: FormatOption = None,
) -> None:
    """Analyse every sample and write the run directory and report.

    The output directory, the scheduler address and the whole configuration are checked
    before any sample is read (exit 2 on a problem).
    """
    from metaniche.pipeline import run as run_pipeline

    _check_out_dir(out)
    if scheduler is not None:
        _check_scheduler(scheduler)
    cfg = load_config(config, format=input_format)
    with _progress(quiet) as notify:
        result = run_pipeline(inputs, out, cfg, clinical=clinical, workers=workers, force=force,
                              scheduler=scheduler, progress=notify)
    _summarise(result, quiet)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Directory for the demo.")] = Path(
        "metaniche-demo"),
    samples: Annotated[int, typer.Option(min=1)] = 12,
    cells: Annotated[int, typer.Option(min=2000)] = 10_000,
    seed: int = 0,
) -> None:
    """Simulate a small cohort, analyse it and write the report."""
    from metaniche.pipeline import run as run_pipeline
    from metaniche.simulate import simulate_cohort, write_cohort

    data = out / "input"
    cohort, clinical = simulate_cohort(n_samples=samples, n_cells=cells, seed=seed)
    write_cohort(data, cohort, clinical)
    _out.print(f"simulated {samples} samples × {cells:,} cells in {data}")
    with _progress(quiet=False) as notify:
        result = run_pipeline([data / "cells"], out / "run", load_config(data / "config.toml"),
                              clinical=data / "clinical.csv", progress=notify)
    _summarise(result, quiet=False)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")]) -> None:
    """Re-render the report of a finished run directory without recomputing."""
    from metaniche.report import render_report

    _out.print(f"report: {render_report(run_dir)}")


@app.command()
def biopsy(
    inputs: Annotated[list[Path], typer.Argument(help="Cell-table files or folders (slides).")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the cores to.")],
    cores: Annotated[int, typer.Option("--cores", min=1, help="Cores per slide.")] = 3,
    core_diameter_um: Annotated[float, typer.Option(
        "--core-diameter-um",
        help="Needle width (or punch diameter), µm.")] = 1000.0,
    core_length_um: Annotated[float, typer.Option(
        "--core-length-um", help="Needle length, µm.")] = 10_000.0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    kind: Annotated[str, typer.Option(
        "--kind", help="needle (rectangle) or punch (disc, TMA core).")] = "needle",
    target: Annotated[str, typer.Option(
        "--target", help="random (anywhere in the tissue) or edge (the tumour edge).")]
    = "random",
    config: ConfigOption = None,
    input_format: FormatOption = None,
) -> None:
    """Cut virtual needle cores or punches from each slide.

    Writes OUT/<sample>.core<k>.parquet (contract columns, original cell ids) and
    OUT/biopsies.geojson (one polygon per core with properties sample and core). Exit 1 when
    a slide could not be read (the others are cut).
    """
    from metaniche.io import read_samples
    from metaniche.studies.biopsy import KINDS, TARGETS, write_biopsies

    if kind not in KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(KINDS)}; got {kind!r}.",
                                 param_hint="--kind")
    if target not in TARGETS:
        raise typer.BadParameter(f"must be one of {', '.join(TARGETS)}; got {target!r}.",
                                 param_hint="--target")
    for hint, value in (("--core-diameter-um", core_diameter_um),
                        ("--core-length-um", core_length_um)):
        if not (math.isfinite(value) and value > 0):
            raise typer.BadParameter(f"must be a positive number; got {value:g}.",
                                     param_hint=hint)
    _check_out_dir(out)
    cfg = load_config(config, format=input_format)
    samples = read_samples(inputs, cfg)
    good = [(s.name, s.cells) for s in samples if s.error is None and s.cells is not None]
    for sample in samples:
        if sample.error is not None:
            _err.print(f"failed: {sample.error}", markup=False, soft_wrap=True)
    written = write_biopsies(good, out, cores, core_diameter_um, core_length_um, seed=seed,
                             kind=kind, target=target, config=cfg)
    _out.print(f"wrote {len(written)} cores from {len(good)} slides to {out}")
    raise typer.Exit(1 if len(good) < len(samples) else 0)


def _programs_help_text() -> str:
    from metaniche.studies.programs import PROGRAMS

    return "; ".join(f"{name} ({spec.quantity}; primary feature {spec.primary_feature})"
                     for name, spec in PROGRAMS.items())


@app.command(help="Power of a planned pre/post-treatment study, by simulation.\n\n"
             "Reads the design table of --config (program, effects, n_patients, "
             "cores_per_patient (0 = whole slide), core_diameter_um, core_length_um, "
             "n_studies, seed) and writes OUT/power.parquet (program, effect, n_patients, "
             "cores_per_patient, feature, power, ci_low, ci_high, n_studies), power.svg and "
             "index.html. Finished grid cells are kept and reused by a rerun.\n\n"
             "Programs: " + _programs_help_text() + ".")
def power(
    config: Annotated[Path, typer.Option("--config", help="Design TOML file (a design table).")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the results to.")],
    workers: Annotated[int, typer.Option(min=1, help="Local worker processes.")] = 1,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    from metaniche.studies.design import load_design
    from metaniche.studies.power import run_power

    design = load_design(config)
    _check_out_dir(out)
    table = run_power(design, out, workers=workers,
                      progress=None if quiet else lambda line: _err.print(
                          line, markup=False, highlight=False))
    if not quiet:
        _out.print(f"{len(table)} power rows; report: {out / 'index.html'}")


#: A Dask scheduler address: optional protocol, host (name, IPv4 or [IPv6]) and port.
_SCHEDULER_ADDRESS = re.compile(
    r"^(?:(?:tcp|tls|ucx|ws|wss)://)?(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r":(?P<port>[0-9]{1,5})$")


def _check_scheduler(address: str) -> None:
    """Reject a malformed ``--scheduler`` address before any work (usage error, exit 2)."""
    match = _SCHEDULER_ADDRESS.match(address)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise typer.BadParameter(f"{address!r} is not a Dask scheduler address; give "
                                 f"protocol://host:port, e.g. tcp://10.0.0.5:8786.",
                                 param_hint="--scheduler")


def _check_out_dir(out: Path) -> None:
    """``--out`` must be a directory, or creatable: not a file, under a writable folder."""
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file, not a directory; give a new or existing "
                                 f"run directory.", param_hint="--out")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise typer.BadParameter(f"{out} cannot be created because {existing} is a file; "
                                 f"choose another run directory.", param_hint="--out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"{existing} is not writable; choose a run directory you "
                                 f"can write to.", param_hint="--out")


@contextlib.contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[ProgressEvent], None] | None]:
    """Progress of the run: a rich bar per sample and stage on a terminal, log lines otherwise.

    Yields the ``progress(event)`` callback for the pipeline (None when quiet). Output goes to
    stderr (stdout keeps the final summary). On a terminal: one bar counting finished samples,
    one bar per running sample advancing through its stages, one for the run-level stages;
    failures are printed above the bars. Without a terminal (CI logs, pipes): one plain line
    per finished sample-stage with its time, and one per finished sample.
    """
    if quiet:
        yield None
        return
    if not _err.is_terminal:
        yield _log_line
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    from metaniche.progress import RUN_STAGES, sample_stage_names

    n_stages = len(sample_stage_names())
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=_err) as bar:
        overall = bar.add_task("samples", total=None)
        running: dict[str, TaskID] = {}
        run_task: list[TaskID] = []

        def notify(event: ProgressEvent) -> None:
            sample = escape(event.sample or "")
            if event.sample is None and event.stage is None:
                bar.update(overall, total=event.total)
                return
            if event.sample is None:
                if not run_task:
                    run_task.append(bar.add_task("run", total=len(RUN_STAGES)))
                if event.status == "started":
                    bar.update(run_task[0], description=f"run: {event.stage}")
                else:
                    bar.advance(run_task[0])
                return
            if event.stage is None:
                if event.status == "started":
                    running[event.sample] = bar.add_task(sample, total=n_stages)
                    return
                task = running.pop(event.sample, None)
                if task is not None:
                    bar.remove_task(task)
                bar.advance(overall)
                if event.status == "failed":
                    bar.console.print(f"  failed  {event.sample}", markup=False)
                return
            task = running.get(event.sample)
            if task is None:
                return
            if event.status == "started":
                bar.update(task, description=f"{sample}: {escape(event.stage)}")
            else:
                bar.advance(task)

        yield notify


def _log_line(event: ProgressEvent) -> None:
    """One plain line per finished stage and per finished sample (``started`` is silent)."""
    if event.status == "started" or (event.sample is None and event.stage is None):
        return
    seconds = f"{event.seconds:.2f} s" if event.seconds is not None else ""
    if event.stage is None:
        line = f"{event.sample}  {event.status}  {seconds} total" if seconds else (
            f"{event.sample}  {event.status}")
    else:
        where = "run" if event.sample is None else event.sample
        state = "" if event.status == "finished" else f"{event.status} after "
        line = f"{where}  {event.stage}  {state}{seconds}"
    _err.print(line.rstrip(), markup=False, highlight=False, soft_wrap=True)


def _summarise(result, quiet: bool) -> None:
    """Print every failed sample and run-level step (one line each, on stderr, even when
    quiet) and the summary line; exit 1 when anything failed, else 0."""
    from metaniche.rundir import RunDir

    failed = result.failed
    for name in failed:
        # A sample's error names its file and the sample.
        _err.print(f"failed: {result.samples[name].error}", markup=False, soft_wrap=True)
    for key in result.failed_steps:
        error = (result.manifest.steps.get(key) or {}).get("error") or "no error recorded"
        _err.print(f"failed: run-level step '{key}': {error}", markup=False, soft_wrap=True)
    if not quiet:
        steps = f"; {len(result.failed_steps)} run-level steps failed" if (
            result.failed_steps) else ""
        _out.print(f"{len(result.samples) - len(failed)} of {len(result.samples)} samples "
                   f"done{steps}; report: {RunDir(result.out_dir).index_path}")
    raise typer.Exit(1 if failed or result.failed_steps else 0)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app; user and usage errors as short messages.

    A :class:`~metaniche.errors.MetanicheError` prints ``error: <message>`` (one line per
    problem) and exits with its code (2); a usage error prints the usage and one line naming
    the problem and exits 2; never a traceback for either.
    """
    try:
        # Without standalone mode click returns the exit code of typer.Exit instead of raising.
        code = app(args=argv, prog_name="metaniche", standalone_mode=False)
    except MetanicheError as err:
        for line in str(err).splitlines() or [type(err).__name__]:
            _err.print(f"error: {line}", markup=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _err.print("aborted")
        sys.exit(130)
    except typer.TyperException as err:
        # click's usage errors (typer vendors click): unknown command or option, missing or
        # bad argument. ``show`` prints the usage, a help hint and "Error: <one line>".
        err.show()  # type: ignore[attr-defined]
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
