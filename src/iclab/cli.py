"""The `iclab` command line: list, show, run, sweep, reproduce, results, redraw, report, export, tasks, models, doctor,
profile."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .runtime._config import load_yaml_overrides, parse_overrides
from .runtime._errors import IclabError

app = typer.Typer(no_args_is_help=True,
                  help="iclab: reproduce and extend in-context-learning research on a laptop CPU.")
console = Console()
err_console = Console(stderr=True)

def _complete_experiment(incomplete: str) -> list[str]:
    """Shell completion of experiment names (`iclab --install-completion` turns it on)."""
    from .runtime._experiment import load_experiments

    return [name for name in sorted(load_experiments()) if name.startswith(incomplete)]


def _complete_model(incomplete: str) -> list[str]:
    from .models._loading import BUNDLED_MODELS

    return [name for name in sorted(BUNDLED_MODELS) if name.startswith(incomplete)]


ExperimentName = Annotated[str, typer.Argument(help="Experiment name, e.g. spinglass.fig4b.",
                                               autocompletion=_complete_experiment)]
RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Root of the run store.")]
Preset = Annotated[Optional[str], typer.Option("--preset", "-p", help="Preset: quick (minutes on CPU) or paper.")]
Sets = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a field: FIELD=VALUE (repeatable).")]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML file of FIELD: VALUE overrides.")]
Force = Annotated[bool, typer.Option("--force", help="Rerun even if a finished run of this config exists.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _version(value: bool) -> None:
    if value:
        from . import __version__

        console.print(f"iclab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print iclab's version and exit.")] = False) -> None:
    """iclab: reproduce and extend in-context-learning research on a laptop CPU."""


def _field_options(args: list[str]) -> list[str]:
    """Extra `--field value` / `--field=value` options as FIELD=VALUE overrides (dashes become
    underscores), so `iclab run taskvectors.main --model gemma3-270m --tasks all` reads naturally."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise IclabError(f"unexpected argument {arg!r}; config fields are set as --FIELD VALUE or --set FIELD=VALUE")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise IclabError(f"option {arg} needs a value, e.g. {arg} VALUE")
            value, i = args[i + 1], i + 1
        out.append(f"{key.replace('-', '_')}={value}")
        i += 1
    return out


def _overrides(config: Path | None, sets: list[str] | None, extra: list[str] | None = None) -> dict:
    values = load_yaml_overrides(config) if config else {}
    values.update(parse_overrides(sets or []))
    values.update(parse_overrides(_field_options(extra or [])))
    return values


def _print_result(res) -> None:
    colour = {"done": "green", "skipped": "yellow", "failed": "red"}[res.status]
    console.print(f"[{colour}]{res.status:>7}[/{colour}] {res.experiment} {res.config_hash} "
                  f"({res.seconds:.1f} s) -> {res.path}")
    if res.error:
        err_console.print(res.error)


@app.command("list")
def list_cmd() -> None:
    """List every experiment with the paper figure it reproduces."""
    from .runtime._experiment import load_experiments

    table = Table("experiment", "what", "reproduces", "presets")
    for name, exp in load_experiments().items():
        table.add_row(name, exp.title, exp.paper, ", ".join(exp.presets))
    console.print(table)


@app.command()
def show(name: ExperimentName) -> None:
    """Show an experiment's config fields, their meaning, defaults and presets."""
    from .runtime._experiment import get_experiment

    exp = get_experiment(name)
    console.print(f"[bold]{exp.name}[/bold]: {exp.title} ({exp.paper})")
    if exp.description:
        console.print(exp.description)
    table = Table("field", "default", *exp.presets, "meaning")
    for field, info in exp.config_cls.model_fields.items():
        table.add_row(field, repr(info.get_default(call_default_factory=True)), *(repr(p.get(field, "")) if field in p else "" for p in exp.presets.values()),
                      info.description or "")
    console.print(table)


_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=_EXTRA)
def run(
    ctx: typer.Context,
    name: ExperimentName,
    preset: Preset = "quick",
    sets: Sets = None,
    config: ConfigFile = None,
    runs_dir: RunsDir = Path("runs"),
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Run one experiment; results go to RUNS_DIR/<experiment>/<config-hash>/.

    Any config field can also be given as an option: --model gemma3-270m is --set model=gemma3-270m.
    """
    from .runtime._experiment import get_experiment
    from .runtime._store import execute

    exp = get_experiment(name)
    cfg = exp.make_config(preset, _overrides(config, sets, ctx.args))
    res = execute(exp, cfg, runs_dir, preset=preset, force=force, quiet=quiet)
    _print_result(res)
    if res.status == "failed":
        raise typer.Exit(1)
    console.print(f"report: {Path(res.path) / 'report.html'}")


@app.command("sweep", context_settings=_EXTRA)
def sweep_cmd(
    ctx: typer.Context,
    name: ExperimentName,
    grid: Annotated[list[str], typer.Option("--grid", "-g", help="Axis FIELD=V1,V2,... (repeatable).")],
    preset: Preset = "quick",
    sets: Sets = None,
    config: ConfigFile = None,
    backend: Annotated[str, typer.Option(help="Executor backend: local (process pool), serial, or ray.")] = "local",
    workers: Annotated[Optional[int], typer.Option(
        help="Parallel workers (default: all cores); with --backend ray and no --address, the CPUs of the Ray instance it starts.")] = None,
    address: Annotated[Optional[str], typer.Option(
        help="Ray cluster to run on: auto (the cluster of `ray start`), HOST:PORT or ray://HOST:10001.")] = None,
    max_retries: Annotated[int, typer.Option(help="Ray: re-runs of a point whose worker died, before it counts as failed.")] = 2,
    runs_dir: RunsDir = Path("runs"),
    force: Force = False,
) -> None:
    """Run a grid of configs; finished points are skipped, so an interrupted sweep resumes.

    Each run asks the scheduler for its config's `cpus` and `gpus` (e.g. --cpus 2).
    """
    from .runtime._executors import make_executor
    from .runtime._sweep import parse_grid, sweep

    executor = make_executor(backend, workers, address=address, max_retries=max_retries)
    results = sweep(name, parse_grid(grid), runs_dir, preset=preset, base=_overrides(config, sets, ctx.args),
                    executor=executor, force=force, on_result=_print_result)
    failed = [r for r in results if r.status == "failed"]
    skipped = sum(r.status == "skipped" for r in results)
    console.print(f"{len(results)} points: {len(results) - len(failed)} finished ({skipped} already done), "
                  f"{len(failed)} failed")
    if failed:
        raise typer.Exit(1)


@app.command()
def reproduce(
    quick: Annotated[bool, typer.Option("--quick/--paper", help="Quick preset (minutes on CPU) or paper settings.")] = True,
    only: Annotated[str | None, typer.Option(help="Only experiments whose name starts with this (comma-separated "
                                             "prefixes allowed).")] = None,
    runs_dir: RunsDir = Path("runs"),
    force: Force = False,
    quiet: Quiet = False,
    jobs: Annotated[int, typer.Option(min=1, help="Research lines run side by side in this many lanes (default: "
                                      "the cores, at most 2).")] = min(2, os.cpu_count() or 1),
    site: Annotated[bool, typer.Option("--site/--no-site", help="Rebuild the report site at the end.")] = True,
    results_file: Annotated[Optional[Path], typer.Option(hidden=True)] = None,
) -> None:
    """Reproduce every experiment (quick preset by default), then rebuild the report site over all runs."""
    from .runtime._reproduce import reproduce as do_reproduce
    from .runtime._reproduce import write_results

    results, report = do_reproduce(runs_dir, preset="quick" if quick else "paper", only=only, force=force,
                                   quiet=quiet, on_result=_print_result, jobs=jobs, site=site)
    if results_file is not None:  # a lane of a parent reproduce: it prints the summary
        write_results(results, results_file)
        raise typer.Exit(1 if any(r.status == "failed" for r in results) else 0)
    failed = sum(r.status == "failed" for r in results)
    console.print(f"{len(results)} experiment{'s' * (len(results) != 1)}: {len(results) - failed} finished, {failed} failed")
    console.print(f"report: {report or 'none (no run has finished)'}", soft_wrap=True, highlight=False, markup=False)
    if failed:
        raise typer.Exit(1)


@app.command("results")
def results_cmd(
    name: ExperimentName,
    table: Annotated[str, typer.Option("--table", "-t", help="Which table of each run to collate.")] = "metrics",
    runs_dir: RunsDir = Path("runs"),
    csv: Annotated[Path | None, typer.Option("--csv", help="Write the full frame (every column) to this CSV file.")] = None,
    claims: Annotated[bool, typer.Option("--claims", help="The paper's claims beside ours, per run, instead.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Rows to print (0: all); --csv always writes them all.")] = 100,
) -> None:
    """Collate every run of an experiment into one tidy table: the settings that differ, then the numbers."""
    from rich.text import Text

    from .runtime._results import CLAIM_SHOWN, cell_text, claims_shown, collate, varying
    from .runtime._results import claims as claims_frame
    from .runtime._store import write_text_atomic

    if claims:  # the paper's statements, sources and notes are in --csv
        frame = claims_frame(name, runs_dir)
        shown = ["run", *varying(frame.to_dict("records"), ["preset", "seed"]), *CLAIM_SHOWN]
    else:
        frame, lead, table_cols = collate(name, runs_dir, table)
        shown = list(dict.fromkeys([*lead[:1], *varying(frame.to_dict("records"), lead[1:]), *table_cols]))
    n_runs = frame[shown[0]].nunique() if shown else 0
    rows = (claims_shown(frame) if claims else frame).head(limit if limit > 0 else len(frame))
    out = Table(title=f"{name}: {'claims' if claims else table} ({n_runs} run{'s' * (n_runs != 1)}, {len(frame)} rows)")
    whole = {shown[0], *(("kind", "ours", "ours_lo", "ours_hi", "verdict") if claims else ())}  # never cut (the run
    # key is what --csv rows join on)
    for col in shown:
        width = max([len(col), *(len(cell_text(v)) for v in rows[col])]) if col in whole else None
        out.add_column(Text(col), no_wrap=col in whole, min_width=width, overflow="fold")
    for values in rows[shown].itertuples(index=False):
        out.add_row(*(Text(cell_text(v)) for v in values))
    console.print(out)
    if len(rows) < len(frame):
        console.print(f"showing {len(rows)} of {len(frame)} rows: --limit 0 prints all, --csv PATH writes them all")
    if csv:
        try:
            write_text_atomic(csv, frame.to_csv(index=False))
        except OSError as err:
            raise IclabError(f"cannot write {csv} ({err.strerror or err}); pass another path to --csv") from None
        console.print(f"wrote {len(frame)} rows x {len(frame.columns)} columns to {csv}", soft_wrap=True,
                      highlight=False, markup=False)


@app.command()
def report(
    runs_dir: RunsDir = Path("runs"),
    out: Annotated[Path | None, typer.Option("--out", help="Site directory (default: RUNS_DIR/site).")] = None,
) -> None:
    """Build the static HTML site over every finished run: research lines, experiments, runs."""
    from .runtime._site import build_site

    console.print(f"report: {build_site(runs_dir, out)}", soft_wrap=True, highlight=False, markup=False)


@app.command()
def redraw(
    run_dirs: Annotated[list[Path], typer.Argument(help="Finished run directories, e.g. runs/spinglass.fig2/<hash>.")],
) -> None:
    """Rebuild finished runs' figures, claims and report from their saved results, without recomputing."""
    from .runtime._store import redraw as redraw_run

    for path in run_dirs:
        console.print(f"redrawn: {redraw_run(path)}", soft_wrap=True, highlight=False, markup=False)


export_app = typer.Typer(no_args_is_help=True, help="Export finished runs to an experiment tracker: MLflow or W&B.")
app.add_typer(export_app, name="export")
ExportExperiment = Annotated[Optional[str], typer.Option(
    "--experiment", "-e", help="Only the runs of this experiment (default: every finished run).",
    autocompletion=_complete_experiment)]


def _print_export(res) -> None:
    from rich.markup import escape

    colour = {"exported": "green", "updated": "cyan", "unchanged": "yellow"}[res.status]
    console.print(f"[{colour}]{res.status:>9}[/{colour}] {escape(res.run)} -> {escape(res.where)}", soft_wrap=True,
                  highlight=False)


def _export_summary(results: list, where: str) -> None:
    n = {s: sum(r.status == s for r in results) for s in ("exported", "updated", "unchanged")}
    console.print(f"{len(results)} run{'s' * (len(results) != 1)}: {n['exported']} exported, {n['updated']} updated, "
                  f"{n['unchanged']} unchanged -> {where}", soft_wrap=True, highlight=False, markup=False)


@export_app.command("mlflow")
def export_mlflow_cmd(
    tracking_uri: Annotated[str, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help=(
        "The MLflow tracking server (http://HOST:PORT) or store (sqlite:///mlflow.db)."))],
    experiment: ExportExperiment = None,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Export finished runs to MLflow, one MLflow run each, named EXPERIMENT/CONFIG-HASH.

    Config fields become parameters, claims metrics, verdicts tags, figures and report artifacts. Exporting
    again skips unchanged runs and updates changed ones (found by their iclab.run_id tag).
    """
    from .runtime._export import export_mlflow

    results = export_mlflow(runs_dir, tracking_uri, experiment, on_result=_print_export)
    _export_summary(results, tracking_uri)


@export_app.command("wandb")
def export_wandb_cmd(
    directory: Annotated[Path, typer.Option("--dir", help="Where the offline W&B runs go (DIR/wandb/offline-run-*).")],
    experiment: ExportExperiment = None,
    project: Annotated[str, typer.Option("--project", help="The W&B project the runs sync to.")] = "iclab",
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Export finished runs as offline W&B runs (no network, no login), named EXPERIMENT/CONFIG-HASH.

    Config fields become the run's config, claims summary metrics, figures and report files. Upload them later
    with `wandb sync DIR/wandb/offline-run-*`; exporting again skips unchanged runs.
    """
    from .runtime._export import export_wandb

    results = export_wandb(runs_dir, directory, experiment, project=project, on_result=_print_export)
    _export_summary(results, f"{directory}/wandb (upload with `wandb sync {directory}/wandb/offline-run-*`)")


@app.command(context_settings=_EXTRA)
def profile(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="A bundled model name, tiny:<family> (a random test model), or a local "
                                         "HuggingFace causal-LM directory.", autocompletion=_complete_model)],
    preset: Preset = "quick",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    runs_dir: RunsDir = Path("runs"),
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Profile a model's in-context learning on one report page: ICL per task category, the task-vector
    layer curve, the function-vector heads and TV vs FV, with intervals (taskvectors.profile)."""
    from .runtime._experiment import get_experiment, research_line
    from .runtime._site import build_site
    from .runtime._store import execute

    exp = get_experiment("taskvectors.profile")
    cfg = exp.make_config(preset, {"model": model, "device": device, "dtype": dtype, **_overrides(None, None, ctx.args)})
    res = execute(exp, cfg, runs_dir, preset=preset, force=force, quiet=quiet)
    _print_result(res)
    if res.status == "failed":
        raise typer.Exit(1)
    site = build_site(runs_dir)
    page = site.parent / research_line(exp.name).name / exp.name / Path(res.path).name / "index.html"
    console.print(f"profile: {page}", soft_wrap=True, highlight=False, markup=False)


@app.command()
def tasks() -> None:
    """List the task-vector task library (the paper's 18 tasks, with substitutes marked)."""
    from .taskvectors._tasks import SUBSTITUTES, builtin_tasks

    substitutes = {v: k for k, v in SUBSTITUTES.items()}
    table = Table()
    table.add_column("task", no_wrap=True)  # names are what users type: never cut them
    for col in ("category", "pairs", "comparator", "source"):
        table.add_column(col)
    for t in builtin_tasks().values():
        note = f" (substitute for {substitutes[t.name]})" if t.name in substitutes else ""
        table.add_row(t.name, t.category, str(len(t.pairs)), t.comparator, t.source + note)
    console.print(table)
    console.print("Add your own: pass a .json or .csv file of input->output pairs as a task name.")


@app.command()
def models() -> None:
    """List the bundled pretrained LMs and whether they are installed (any local HF directory also works)."""
    import importlib.util

    from .models import BUNDLED_MODELS

    table = Table("name", "installed", "model", "install with")
    for m in BUNDLED_MODELS.values():
        ok = importlib.util.find_spec(m.package) is not None
        table.add_row(m.name, "yes" if ok else "no", m.description, m.install)
    console.print(table)


@app.command()
def doctor(
    model: Annotated[str, typer.Argument(help="A bundled model name, tiny:<family> (a random test model), or a local "
                                         "HuggingFace causal-LM directory.", autocompletion=_complete_model)],
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
) -> None:
    """Check that iclab reads and patches MODEL correctly (seconds on CPU); exit 1 naming the failed checks."""
    import time

    from .models import load_model
    from .models._doctor import diagnose

    t0 = time.perf_counter()
    lm = load_model(model, dtype=dtype, device=device)
    checks = diagnose(lm)
    table = Table("check", "result", "detail", title=f"iclab doctor {model} ({device}, {dtype})")
    table.add_row("loads offline", "[green]pass[/green]", f"{type(lm.model).__name__} from {lm.source}")
    for c in checks:
        table.add_row(c.name, "[green]pass[/green]" if c.passed else "[red]FAIL[/red]", c.detail)
    console.print(table)
    failed = [c.name for c in checks if not c.passed]
    console.print(f"{len(checks) + 1 - len(failed)} of {len(checks) + 1} checks passed in "
                  f"{time.perf_counter() - t0:.1f} s" + (f"; failed: {'; '.join(failed)}" if failed else ""))
    if failed:
        raise typer.Exit(1)


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt  # `kill` ends a run like Ctrl-C: workers and lanes stop, nothing half-written stays


def main() -> None:
    """The console script: one-line errors, exit status 2 for mistakes, 130 when interrupted."""
    import signal

    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        _main()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main() -> None:
    try:
        code = app(standalone_mode=False, prog_name="iclab")  # typer returns the exit code of typer.Exit, and 130 on Ctrl-C
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except IclabError as err:
        from rich.markup import escape  # a message's brackets (pip install -e ".[mlflow]") are text, not markup

        err_console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted; rerun the same command to resume", highlight=False)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as err:
        if hasattr(err, "format_message") and hasattr(err, "exit_code"):  # a usage error (click, vendored by typer)
            ctx = getattr(err, "ctx", None)
            where = ctx.command_path if ctx is not None else "iclab"
            err_console.print(f"[red]error:[/red] {err.format_message().rstrip('.')}; see `{where} --help`", highlight=False,
                              soft_wrap=True)
            sys.exit(err.exit_code)
        raise
