"""Measure the rewind point of a run with `rewind.iteration = "stable"` (Frankle et al. 2020).

Before IMP, the dense network of the run's first seed is measured at the candidate iterations
of `experiments.stable_rewind.candidates` in increasing order (`stability_study.measure`: two
copies, 30 alphas, their files and CSV rows beside the run like `ticketlab stability`'s), up to
the first k whose test error barrier is below `rewind.stable_threshold`: the smallest stable
k, where survivors rewind to. When none is, the largest candidate is taken and the choice says
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
    seed = spec.seeds[0]
    replicate = Replicate(spec, experiment.run_id, seed, ResultsStore(experiment.runs_dir),
                          experiment_data(experiment), device=experiment.device)
    replicate.initial_weights()  # stored and recorded: the dense level starts from the same draw
    ladder = candidates(schedule.iterations)
    report(f"rewind = stable: measuring the dense network's instability (seed {seed}) at k = "
           f"{', '.join(map(str, ladder))}, up to the first test barrier under {threshold:.2%}")
    results, chosen = [], None
    for k in ladder:
        result = measure(replicate, Subject(MAIN, 0), k, schedule, copies=DEFAULT_COPIES, points=DEFAULT_POINTS,
                         device=experiment.device)
        results.append(result)
        write_csv(experiment.run_dir / CSV_NAME, results)
        report(f"  k = {k:>6}: test barrier {result.test_barrier:.2%}, train barrier {result.train_barrier:.2%}")
        if result.test_barrier < threshold:
            chosen = k
            break
    choice = {"chosen": ladder[-1] if chosen is None else chosen, "stable": chosen is not None, "seed": seed,
              "threshold": threshold, "candidates": ladder, "copies": DEFAULT_COPIES, "points": DEFAULT_POINTS,
              "measured": [{"k": r.k, "test_barrier": r.test_barrier, "train_barrier": r.train_barrier,
                            "endpoint_test_error": r.row()["endpoint_test_error"]} for r in results]}
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
