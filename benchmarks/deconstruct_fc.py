"""Evidence: the studies of Zhou et al. (2019), "Deconstructing Lottery Tickets", on LeNet-300-100 / MNIST.

2 seeds, the paper's per-layer rates (20% hidden, 10% output), Adam 1.2e-3, batch 60,
20k iterations per level, evaluation every 500, IMP down to about 1.9% of weights remaining,
for every criterion (mask-1 rewind, mask-0 zero), every mask-1 action (criterion
large_final, mask-0 zero) and every mask-0 action (large_final, rewind). Prints one table per
study and checks the paper's findings:
  1. large_final and magnitude_increase are >= 2 points above random at about 2% remaining;
  2. every *_same_sign mask-1 action is within 1 point of rewind at about 5% remaining, and
     the same action without the sign is below its signed version;
  3. zero_or_freeze_by_movement is at least as good as zero, and freeze_init is below zero
     (mean over the table's columns).

    python benchmarks/deconstruct_fc.py --data-dir ../shared/data --runs-dir runs/bench --jobs 2

Resumable: re-running continues where it stopped. The variants the findings compare run
first, so a partial run already answers them. The standard ticket (large_final, rewind,
zero) is one run shared by the three studies. Inputs are scaled to [0, 1] as in the
paper's reference code (benchmarks/lenet_imp.py uses mean/std normalisation instead).
`--only criteria:snip,...` trains just those variants, in that order, e.g. to finish a sweep in parts (a run
repeats its numbers on the same machine and torch build; another CPU's floating-point
rounding can move them by about seed-to-seed amounts). A smoke run on other run ids:
--iterations 200 --levels 3 (the findings need the full schedule).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from ticketlab.errors import TicketlabError
from ticketlab.experiments import print_level, spec_from_dict
from ticketlab.experiments.deconstruct import DEFAULT_DENSITIES, StudyTable, plan, run_sweep, study_table
from ticketlab.plots.deconstruct import plot_study
from ticketlab.store import ResultsStore
from ticketlab.store.report import export_csv

SPEC = {
    "data": {"name": "mnist", "normalization": "unit"},  # pixels / 255, as Zhou et al.'s train.py
    "model": {"name": "lenet_300_100"},
    "training": {"iterations": 20_000, "eval_every": 500},
    "pruning": {"target_density": 0.019},
    "seeds": [0, 1],
}
SEEDS = len(SPEC["seeds"])
STUDIES = {"criteria": None, "mask1": None, "mask0": None}  # every registered variant
FINDINGS_FIRST = (  # the variants the findings compare run first, so a partial run answers them
    [("criteria", name) for name in ("large_final", "random", "magnitude_increase")]
    + [("mask1", name) for name in ("reinit_same_sign", "reinit", "reshuffle_same_sign", "reshuffle",
                                     "constant_same_sign", "constant")]
    + [("mask0", name) for name in ("zero_or_freeze_by_movement", "freeze_init")]
)


def acc(table: StudyTable, name: str, density: float) -> float | None:
    """Mean accuracy at the column closest to `density`; None until a level within 30% of it
    has finished for every seed (a partial run must not compare at some other density)."""
    if not table.columns or abs(table.columns[table.closest(density)][1] - density) > 0.3 * density:
        return None
    summary = table.at(name, density)
    return None if summary is None or summary.seeds < SEEDS else summary.early_stop_acc[0]


def column(table: StudyTable, density: float) -> str:
    """The density actually compared, for the finding's text."""
    return f"{table.columns[table.closest(density)][1]:.1%}" if table.columns else "-"


def pct(value: float | None) -> str:
    return "pending" if value is None else f"{value:.2%}"


def verdict(values: tuple[float | None, ...], holds) -> str:
    return "PENDING" if None in values else "PASS" if holds(*values) else "FAIL"


def findings(tables: dict[str, StudyTable]) -> list[tuple[str, str]]:
    """The paper's findings as (PASS | FAIL | PENDING, text with the numbers) pairs."""
    checks = []
    criteria, mask1, mask0 = tables["criteria"], tables["mask1"], tables["mask0"]
    random = acc(criteria, "random", 0.02)
    for name in ("large_final", "magnitude_increase"):
        value = acc(criteria, name, 0.02)
        checks.append((verdict((value, random), lambda v, r: v >= r + 0.02),
                       f"criteria at {column(criteria, 0.02)}: {name} {pct(value)} >= random {pct(random)} + 2 pt"))
    rewind = acc(mask1, "rewind", 0.05)
    for name in ("reinit", "reshuffle", "constant"):
        signed, plain = acc(mask1, f"{name}_same_sign", 0.05), acc(mask1, name, 0.05)
        checks.append((verdict((signed, plain, rewind), lambda s, p, r: abs(s - r) <= 0.01 and p < s),
                       f"mask-1 at {column(mask1, 0.05)}: {name}_same_sign {pct(signed)} within 1 pt of rewind "
                       f"{pct(rewind)}; {name} {pct(plain)} below it"))
    means = {}
    for name in ("zero", "freeze_init", "zero_or_freeze_by_movement"):
        cells = [acc(mask0, name, density) for density in DEFAULT_DENSITIES]
        means[name] = statistics.fmean(cells) if cells and None not in cells else None
    zero, freeze, movement = means["zero"], means["freeze_init"], means["zero_or_freeze_by_movement"]
    columns = ", ".join(column(mask0, density) for density in DEFAULT_DENSITIES)
    checks.append((verdict((movement, zero), lambda m, z: m >= z),
                   f"mask-0 mean over {columns}: zero_or_freeze_by_movement {pct(movement)} >= zero {pct(zero)}"))
    checks.append((verdict((freeze, zero), lambda f, z: f < z),
                   f"mask-0 mean over {columns}: freeze_init {pct(freeze)} < zero {pct(zero)}"))
    return checks


def variant_pairs(text: str) -> list[tuple[str, str]]:
    """'criteria:snip,mask1:reinit' -> [('criteria', 'snip'), ('mask1', 'reinit')]."""
    pairs = [tuple(item.strip().split(":", 1)) for item in text.split(",") if item.strip()]
    if not pairs or any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: expected STUDY:VARIANT pairs separated by commas, "
                                         f"studies {', '.join(STUDIES)}")
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--runs-dir", default="runs/bench")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--iterations", type=int, help="override the 20k iterations per level (smoke runs)")
    parser.add_argument("--levels", type=int, help="override the number of levels (smoke runs)")
    parser.add_argument("--out", help="also write the report, every level as CSV, and the figures here")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: tables, findings and figures from what the store holds now")
    parser.add_argument("--only", type=variant_pairs,
                        default=[], metavar="STUDY:VARIANT,...",
                        help="train only these variants, in this order (e.g. criteria:snip,mask1:reinit); the report "
                             "still covers every variant the store holds")
    args = parser.parse_args()
    spec = {**SPEC, "training": dict(SPEC["training"]), "pruning": dict(SPEC["pruning"])}
    if args.iterations:
        spec["training"].update(iterations=args.iterations, eval_every=min(500, args.iterations))
    if args.levels is not None:
        spec["pruning"]["levels"] = args.levels
    started = time.perf_counter()
    sweep, dataset = plan(spec_from_dict(spec), STUDIES, args.runs_dir, args.data_dir)
    experiments = sweep.experiments(FINDINGS_FIRST)
    runs = [f"{len(sweep.variants)} variants in {len(experiments)} distinct runs; standard ticket: run "
            f"{sweep.standard.run_id}, spec {sweep.standard.run_dir / 'spec.toml'} (variants differ only in "
            "pruning.criterion, ticket.mask1 or ticket.mask0)"]
    for experiment in experiments:
        names = [f"{v.study}:{v.name}" for v in sweep.variants if v.experiment.run_id == experiment.run_id]
        runs.append(f"  {experiment.run_id}  {', '.join(names)}")
    print("\n".join(runs), flush=True)
    if not args.report_only:
        try:  # an unknown study:variant is refused before any training
            chosen = sweep.subset(args.only) if args.only else sweep
        except TicketlabError as error:
            parser.error(str(error))
        first = args.only or FINDINGS_FIRST
        run_sweep(chosen, jobs=args.jobs, dataset=dataset, report=print_level, first=first)
    wall = time.perf_counter() - started

    store = ResultsStore(args.runs_dir)
    rows = [row for experiment in experiments for row in store.levels(experiment.run_id)]
    planned = len(experiments) * SEEDS * (sweep.standard.spec.pruning.levels + 1)
    lines = [
        f"machine: {platform.machine()}, {torch.get_num_threads()} cores visible, torch {torch.__version__}; "
        f"{args.jobs} parallel 1-thread processes; seeds {list(sweep.standard.spec.seeds)}; "
        f"standard ticket run {sweep.standard.run_id}; wall time this invocation {wall / 60:.1f} min",
        f"store: {len(rows)} of {planned} level trainings finished, "
        f"{sum(row.seconds for row in rows) / 3600:.1f} h of training summed over processes",
    ]
    tables = {}
    for study in sweep.studies():
        tables[study] = study_table(store, study, sweep.runs(study))
        lines += ["", f"{sweep.title(study)}: test accuracy at early stop, mean over seeds", "",
                  tables[study].markdown()]
    lines.append("")
    lines += [f"{status:<8} {text}" for status, text in findings(tables)]
    print("\n".join(lines))
    figures = Path(args.out) if args.out else sweep.figure_dir
    for study in sweep.studies():
        for path in plot_study(store, sweep.title(study), sweep.runs(study), figures / f"deconstruct_fc_{study}"):
            print(f"plot: {path}")
    if args.out:
        report = Path(args.out) / "deconstruct_fc.md"
        report.write_text("```\n" + "\n".join(lines + [""] + runs) + "\n```\n")
        export_csv(rows, Path(args.out) / "deconstruct_fc_levels.csv")
        print(f"report: {report}, {Path(args.out) / 'deconstruct_fc_levels.csv'}")

if __name__ == "__main__":
    main()
