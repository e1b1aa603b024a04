"""`ticketlab runs`, `show` and `plot`: read results from the store.

They open the store read-only: they work on read-only media and create nothing at a
mistyped --runs-dir.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ticketlab.cli.common import add_runs_dir, csv_list, print_figures
from ticketlab.errors import TicketlabError


def _planned(spec: dict) -> dict[str, set[tuple[int, int]]]:
    """{branch: the (seed, level) trainings the stored spec plans}: every seed trains levels
    0..L of the tickets and 1..L of each baseline."""
    levels = spec.get("pruning", {}).get("levels", 0)
    seeds = spec.get("seeds", [])
    plan = {"imp": {(s, level) for s in seeds for level in range(levels + 1)}}
    for branch in spec.get("baselines", []):
        plan[branch] = {(s, level) for s in seeds for level in range(1, levels + 1)}
    return plan


def progress_text(spec: dict, rows) -> str:
    """Done/planned level trainings per branch, e.g. 'imp 6/6 reinit 3/4'."""
    done = {(r.branch, r.seed, r.level) for r in rows}
    return " ".join(f"{branch} {sum((branch, s, l) in done for s, l in wanted)}/{len(wanted)}"
                    for branch, wanted in _planned(spec).items())


def _cmd_runs(args: argparse.Namespace) -> int:
    from ticketlab.store import ResultsStore

    store = ResultsStore(args.runs_dir, readonly=True)
    runs = store.runs()
    if not runs:
        print(f"no runs in {args.runs_dir}")
        return 0
    sweeps = {run_id: sweep_id for sweep_id, _, _ in store.sweeps() for run_id in store.sweep_runs(sweep_id)}
    jobs = _slurm_jobs([args.runs_dir / run_id for run_id, _, _ in runs])
    print(f"{'run':<13} {'sweep':<13} {'created':<17} {'model':<14} {'data':<14} {'criterion':<12} levels  "
          f"{'seeds':<8} done (level trainings: done/planned)")
    for run_id, spec, created in runs:
        pruning = spec.get("pruning", {})
        seeds = ",".join(map(str, spec.get("seeds", []))) or "-"
        print(f"{run_id:<13} {sweeps.get(run_id, '-'):<13} {time.strftime('%Y-%m-%d %H:%M', time.localtime(created)):<17} "
              f"{spec.get('model', {}).get('name', '?'):<14} {spec.get('data', {}).get('name', '?'):<14} "
              f"{pruning.get('criterion', '?'):<12} {pruning.get('levels', '?'):>6}  {seeds:<8} "
              f"{progress_text(spec, store.levels(run_id))}{_slurm_summary(jobs.get(args.runs_dir / run_id))}")
    return 0


def _slurm_jobs(run_dirs: list[Path]) -> dict:
    """The Slurm jobs of runs submitted with --executor slurm (engine/slurm/status.py)."""
    from ticketlab.engine.slurm.status import task_jobs

    return task_jobs(run_dirs)


def _slurm_summary(jobs) -> str:
    from ticketlab.engine.slurm.status import summary

    text = summary(jobs or [])
    return f"  {text}" if text else ""


def _csv_target(path: Path, flag: str = "--csv", example: str = "levels.csv") -> Path:
    """`path` if a CSV file can go there; a clear error otherwise (checked before any output)."""
    if path.is_dir():
        raise TicketlabError(f"{flag} {path} is a folder; give a file name, e.g. {flag} {path / example}")
    if not path.parent.is_dir():
        raise TicketlabError(f"{flag} {path}: the folder {path.parent} does not exist; create it or give another path")
    return path


def _cmd_show(args: argparse.Namespace) -> int:
    from ticketlab.store import ResultsStore
    from ticketlab.store.report import export_csv, headline, level_table, resolve_run, summarise

    csv_path = _csv_target(args.csv) if args.csv else None
    if args.stability_csv:
        _csv_target(args.stability_csv, "--stability-csv", "stability.csv")
    store = ResultsStore(args.runs_dir, readonly=True)
    run_id = resolve_run(store, args.run_id)
    stability = _stability_rows(args, run_id)
    rows = store.levels(run_id)
    held = sorted({r.seed for r in rows})
    if args.seeds is not None:
        unknown = sorted(set(args.seeds) - set(held))
        if unknown:
            raise TicketlabError(f"run {run_id} has no finished level for seed(s) {', '.join(map(str, unknown))}; "
                                 f"it holds seeds {', '.join(map(str, held)) or 'none yet'}")
        rows = [r for r in rows if r.seed in args.seeds]
    seeds = sorted({r.seed for r in rows})
    print(f"run {run_id} ({args.runs_dir / run_id / 'spec.toml'})")
    if len(seeds) > 1:
        print(f"seeds {', '.join(map(str, seeds))}: mean ± standard deviation over seeds")
    elif seeds:
        print(f"seed {seeds[0]} only: no spread")
    print()
    print(level_table(summarise(rows)) if rows else "no finished levels yet")
    sentence = headline(summarise(rows)) if rows else None
    if sentence:
        print(f"\n{sentence}")
    if csv_path:
        export_csv(rows, csv_path)
        print(f"\nwrote {csv_path}")
    if stability:
        _show_stability(args, run_id, stability)
    _show_slurm_jobs(args.runs_dir / run_id)
    return 0


def _show_slurm_jobs(run_dir: Path) -> None:
    """The run's tasks that Slurm has queued, is running or saw fail, with job ids and logs."""
    from ticketlab.engine.slurm.status import table

    text = table(_slurm_jobs([run_dir]).get(run_dir, []))
    if text:
        print(f"\nSlurm jobs of unfinished tasks:\n{text}")


def _stability_rows(args: argparse.Namespace, run_id: str) -> list[dict]:
    """The run's stability rows (`ticketlab stability`); none with --stability-csv is an error."""
    from ticketlab.analysis.stability_report import CSV_NAME, stability_rows

    rows = stability_rows(args.runs_dir / run_id)
    if args.stability_csv and not rows:
        raise TicketlabError(f"run {run_id} has no stability study ({args.runs_dir / run_id / CSV_NAME}); run "
                             f"`ticketlab stability {run_id[:8]} --rewind-iterations K,...` first")
    return rows


def _show_stability(args: argparse.Namespace, run_id: str, rows: list[dict]) -> None:
    """The run's stability table; `--stability-csv` copies its rows."""
    import shutil

    from ticketlab.analysis.stability_report import CSV_NAME, stability_table

    print(f"\ninstability (error barriers between copies, {args.runs_dir / run_id / CSV_NAME}):")
    print(stability_table(rows))
    if args.stability_csv:
        shutil.copyfile(args.runs_dir / run_id / CSV_NAME, args.stability_csv)
        print(f"\nwrote {args.stability_csv}")


def _cmd_plot(args: argparse.Namespace) -> int:
    from ticketlab.plots import plot_runs
    from ticketlab.store import ResultsStore
    from ticketlab.store.report import resolve_run

    store = ResultsStore(args.runs_dir, readonly=True)
    run_ids = list(dict.fromkeys(resolve_run(store, run) for run in args.runs))
    if args.out:
        out = Path(args.out)
    elif len(run_ids) == 1:
        out = args.runs_dir / run_ids[0] / "lth"
    else:  # not one run's own figure, which `imp` writes and a comparison must not replace
        out = args.runs_dir / "compare" / "_".join(run_ids) / "lth"
    print_figures(lambda: plot_runs(store, run_ids, out, formats=args.formats), out)
    return 0


def add_commands(commands) -> None:
    runs = commands.add_parser("runs", help="list the runs in the results store",
                               description="List the runs in the results store, with the level trainings each "
                               "has done out of those its stored spec plans (every seed, every branch).")
    add_runs_dir(runs)
    runs.set_defaults(run=_cmd_runs)

    show = commands.add_parser("show", help="print a run's level table",
                               description="Print a run's level table: remaining weights, test accuracy at "
                               "early stop, early-stop iteration and final accuracy, mean and standard deviation "
                               "over seeds.")
    show.add_argument("run_id", metavar="RUN", help="run id (a unique prefix is enough)")
    show.add_argument("--seeds", type=csv_list(int), help="average only these seeds (comma-separated)")
    show.add_argument("--csv", type=Path, help="also export every level row to this CSV file")
    show.add_argument("--stability-csv", type=Path, help="also copy the run's stability rows to this CSV file")
    add_runs_dir(show)
    show.set_defaults(run=_cmd_show)

    plot = commands.add_parser("plot", help="draw the LTH figures for one or more runs",
                               description="Draw test accuracy at early stop and early-stop iteration vs "
                               "percent of weights remaining, from the store.")
    plot.add_argument("runs", nargs="+", help="run ids (unique prefixes)")
    plot.add_argument("--out", type=Path, help="output file stem (default: <runs-dir>/<run>/lth for one run, "
                      "<runs-dir>/compare/<run>_<run>.../lth for several)")
    plot.add_argument("--formats", type=csv_list(str), default=["png", "svg"], help="comma-separated")
    add_runs_dir(plot)
    plot.set_defaults(run=_cmd_plot)
