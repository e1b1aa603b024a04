"""Measure the rewind point of a run with `rewind.iteration = "stable"` (Frankle et al. 2020).

Before IMP, the dense network of every seed of the run is measured at the candidate iterations
of `experiments.stable_rewind.candidates` in increasing order (`stability_study.measure`: two
copies, 30 alphas, their files and CSV rows beside the run like `ticketlab stability`'s), up to
the first k whose test error barrier, averaged over the seeds (the paper reports the mean over
replicates), is below `rewind.stable_threshold`: the smallest stable k, where the survivors of
every seed rewind to (one k per run, so the seeds stay replicates of one experiment). When none is, the largest candidate is taken and the choice says
so. The choice and its evidence (k -> barriers) go to `<run>/stability_choice.json`; a run that
has it is not measured again.
"""

from __future__ import annotations

import json
from typing import Callable

from ticketlab.analysis.stability import DEFAULT_COPIES, DEFAULT_POINTS
from ticketlab.analysis.stability_study import CSV_NAME, Subject, measure, write_csv
from ticketlab.experiments.branches import MAIN
from ticketlab.experiments.imp import Replicate
from ticketlab.experiments.stable_rewind import CHOICE_FILE, candidates
from ticketlab.experiments.tasks import Experiment, experiment_data
from ticketlab.store import ResultsStore, atomic_write_bytes


def choose_rewind(experiment: Experiment, report: Callable[[str], None] = print) -> dict:
    """The stored choice of a "stable" run, measured first if it has none; `report` gets a line
    per measured k and one for the choice."""
    path = experiment.run_dir / CHOICE_FILE
    if path.is_file():
        choice = json.loads(path.read_text())
        report(describe(choice))
        return choice
    spec = experiment.spec
    schedule = spec.training.train_spec()
    threshold = spec.rewind.stable_threshold
    store, data = ResultsStore(experiment.runs_dir), experiment_data(experiment)
    replicates = [Replicate(spec, experiment.run_id, seed, store, data, device=experiment.device)
                  for seed in spec.seeds]
    for replicate in replicates:
        replicate.initial_weights()  # stored and recorded: the dense level starts from the same draw
    ladder = candidates(schedule.iterations, spec.rewind.stable_candidates)
    report(f"rewind = stable: measuring the dense network's instability (seeds {', '.join(map(str, spec.seeds))}) "
           f"at k = {', '.join(map(str, ladder))}, up to the first mean test barrier under {threshold:.2%}")
    results, measured, chosen = [], [], None
    for k in ladder:
        at_k = [measure(r, Subject(MAIN, 0), k, schedule, copies=DEFAULT_COPIES, points=DEFAULT_POINTS,
                        device=experiment.device) for r in replicates]
        results += at_k
        write_csv(experiment.run_dir / CSV_NAME, results)
        row = {"k": k, **{key: sum(getattr(r, key) for r in at_k) / len(at_k)
                          for key in ("test_barrier", "train_barrier")},
               "endpoint_test_error": sum(r.row()["endpoint_test_error"] for r in at_k) / len(at_k),
               "test_barrier_per_seed": [r.test_barrier for r in at_k]}
        measured.append(row)
        report(f"  k = {k:>6}: test barrier {row['test_barrier']:.2%}, train barrier {row['train_barrier']:.2%}"
               + (f" (mean of {len(at_k)} seeds)" if len(at_k) > 1 else ""))
        if row["test_barrier"] < threshold:
            chosen = k
            break
    choice = {"chosen": ladder[-1] if chosen is None else chosen, "stable": chosen is not None,
              "seeds": list(spec.seeds), "threshold": threshold, "candidates": ladder, "copies": DEFAULT_COPIES,
              "points": DEFAULT_POINTS, "measured": measured}
    atomic_write_bytes(path, json.dumps(choice, indent=1).encode())
    report(describe(choice))
    return choice


def describe(choice: dict) -> str:
    """One line: the chosen k and why."""
    if choice["stable"]:
        return (f"rewind = stable: k = {choice['chosen']}, the smallest candidate whose test barrier is under "
                f"{choice['threshold']:.2%} (evidence: {CHOICE_FILE})")
    return (f"rewind = stable: no candidate is stable (every test barrier >= {choice['threshold']:.2%}); "
            f"rewinding to the largest, k = {choice['chosen']} (evidence: {CHOICE_FILE})")
