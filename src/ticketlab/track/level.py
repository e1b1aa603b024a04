"""Levels as they train: live evaluation points, and each finished level's summary.

`LevelTracker` belongs to one replicate (one seed of one run) in whichever process trains it:
the driver, a local worker, a Ray worker. Logging happens there, per level, so nothing has
to travel back to the driver and no two processes ever log the same level: the engine runs a
(seed, branch) in one task at a time, and the run's lock keeps a second driver out.

`live(branch, level)` gives the training loop's `on_evaluation` hook; `recorded(row)` is
called with each level's stored row. Points the loop did not send (a level trained elsewhere
and adopted, a one-level method, a stacked level) are read back from the store, so every
backend gets every evaluation of every level exactly once.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from ticketlab.track.base import LevelKey, LevelSummary, Point, RunInfo
from ticketlab.track.hub import Hub, hub_for
from ticketlab.track.spec import TrackSpec

POINT_FIELDS = ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc")


def stored_points(store, key: LevelKey) -> list[Point]:
    """A recorded level's evaluations, from the store's metrics (no learning rate or wall time)."""
    by_step: dict[int, dict[str, float]] = {}
    for step, name, value in store.metrics(key.run_id, key.seed, key.branch, key.level):
        if name in POINT_FIELDS:
            by_step.setdefault(step, {})[name] = value
    def number(value) -> float:  # SQLite keeps NaN (no training loss before the first step) as NULL
        return math.nan if value is None else float(value)

    return [Point(step, **{name: number(values.get(name)) for name in POINT_FIELDS})
            for step, values in sorted(by_step.items()) if "test_acc" in values]


def level_summary(store, row) -> LevelSummary:
    """A recorded level's summary, the per-layer densities from its stored mask file."""
    from safetensors.torch import load_file

    path = Path(store.runs_dir) / row.run_id / f"seed_{row.seed}" / row.branch / f"level_{row.level}" / "mask.safetensors"
    layers = {name: float(keep.float().mean()) for name, keep in sorted(load_file(path).items())} if path.exists() else {}
    return LevelSummary(density=row.density, kept=row.kept, total=row.total, layer_density=layers,
                        early_stop_iteration=row.early_stop_iteration, early_stop_test_acc=row.early_stop_test_acc,
                        final_test_acc=row.final_test_acc, seconds=row.seconds)


def log_recorded_level(hub: Hub, store, row, run: RunInfo, sent: set[int] = frozenset(), backends=None,
                       only_new: bool = False) -> None:
    """Log a recorded level: start it unless `backends` already did, the stored points not in
    `sent`, then its summary. Runs on the hub's thread."""
    key = LevelKey(row.run_id, row.seed, row.branch, row.level)
    if backends is None:
        backends = hub.begin_level(key, run, only_new=only_new)
    if not backends:
        return
    for point in stored_points(store, key):
        if point.iteration not in sent:
            for backend in backends:
                hub.call(backend, "point", key, point)
    hub.end_level(backends, key, level_summary(store, row))


class LevelTracker:
    """The trackers of one replicate (run, seed), in the process that trains it."""

    def __init__(self, spec: TrackSpec, runs_dir: Path, run_id: str, seed: int, run: RunInfo):
        self.hub = hub_for(spec, runs_dir)
        self.runs_dir, self.run_id, self.seed, self.run = Path(runs_dir), run_id, seed, run
        self._live: dict[tuple[str, int], tuple[list, set[int]]] = {}  # (branch, level) -> (backends, sent)
        self._store = None

    def live(self, branch: str, level: int) -> Callable:
        """The training loop's `on_evaluation(evaluation, lr, seconds)` for this level: it only
        queues the point (the first one also starts the level at every backend)."""
        key = LevelKey(self.run_id, self.seed, branch, level)
        backends, queue_point = self.hub.live_level(key, self.run)
        sent: set[int] = set()
        self._live[(branch, level)] = (backends, sent)

        def on_evaluation(evaluation, lr: float, seconds: float) -> None:
            sent.add(evaluation.step)
            queue_point(evaluation, lr, seconds)

        return on_evaluation

    def recorded(self, row) -> None:
        """A level was recorded in the store: queue the points not sent live and its summary."""
        backends, sent = self._live.pop((row.branch, row.level), (None, set()))

        def work() -> None:
            log_recorded_level(self.hub, self.store(), row, self.run, set(sent), backends)

        self.hub.submit(work)

    def store(self):
        """The store, opened on the tracker thread (SQLite connections stay in their thread)."""
        if self._store is None:
            from ticketlab.store import ResultsStore

            self._store = ResultsStore(self.runs_dir, readonly=True)
        return self._store


def reporting(report: Callable | None, tracker: LevelTracker | None) -> Callable | None:
    """`report` that also tells `tracker` of every recorded level."""
    if tracker is None:
        return report

    def both(row) -> None:
        tracker.recorded(row)
        if report is not None:
            report(row)

    return both
