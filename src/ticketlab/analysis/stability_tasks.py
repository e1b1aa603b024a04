"""A stability study as engine tasks: every copy is a task, and so is each path evaluation.

Per (seed, subject, k): one `CopyTask` per copy (trains it unless its file verifies), then a
`PathTask` that needs them all and evaluates the linear path of every pair (unless stored)
and returns the `Instability`. Copies of one subject are independent, so `--jobs N` or Ray
trains them side by side; paths are tasks too because each is tens of full evaluations. All
tasks hold the run's lock (`<run>/.lock`), so a study of a run that `imp` (or another study)
is running is refused, and a worker whose driver died writes nothing. The driver writes the
CSV (sorted rows, so the same numbers whatever order tasks finish in).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ticketlab.analysis.stability_study import (
    Instability, Subject, check_replicate, copy_pairs, measure, source_sha, stored_path, study_folder,
    ensure_copy, verified_copy_sha, write_csv,
)
from ticketlab.analysis.stability_report import CSV_NAME
from ticketlab.data import Dataset
from ticketlab.engine import Context, cached, run_tasks
from ticketlab.engine.lock import no_check
from ticketlab.engine.worker import remember
from ticketlab.experiments.imp import Replicate
from ticketlab.experiments.spec import ExperimentSpec
from ticketlab.experiments.tasks import data_key, load_data
from ticketlab.store import ResultsStore
from ticketlab.track.session import unit
from ticketlab.track.spec import TrackSpec


@dataclass(frozen=True)
class Study:
    """What every task of one study needs to rebuild its replicate anywhere (small, picklable)."""

    spec: ExperimentSpec
    run_id: str
    runs_dir: Path
    data_dir: Path | None
    device: str | None
    copies: int
    points: int
    track: TrackSpec | None = None  # trackers the copies stream to (usable ones, checked by the driver)

    @property
    def lock(self) -> Path:
        return self.runs_dir / self.run_id / ".lock"

    def store(self) -> ResultsStore:
        """The run's store, read-only, opened once per process."""
        return cached(("stability-store", str(self.runs_dir)), lambda: ResultsStore(self.runs_dir, readonly=True))

    def replicate(self, seed: int) -> Replicate:
        dataset = cached(data_key(self.spec, self.data_dir), lambda: load_data(self.spec, self.data_dir))
        return Replicate(self.spec, self.run_id, seed, self.store(), dataset, device=self.device)


@dataclass(frozen=True)
class Measured:
    """One (seed, subject, k) of a study: the folder of its copies and paths."""

    study: Study
    seed: int
    subject: Subject
    k: int

    @property
    def group(self) -> str:
        s = self.subject
        return f"stability/{self.study.run_id}/seed_{self.seed}/{s.branch}/level_{s.level}/k_{self.k}"

    @property
    def locks(self) -> tuple[Path, ...]:
        return (self.study.lock,)

    def copy_sha(self, copy: int) -> str | None:
        """The checksum of copy `copy` when its file verifies and derives from the run's current files."""
        study = self.study
        folder = study_folder(study.runs_dir, study.run_id, self.seed, self.subject, self.k)
        return verified_copy_sha(folder / f"copy_{copy}.safetensors",
                                 source_sha(study.store(), study.run_id, self.seed, self.subject))


@dataclass(frozen=True)
class CopyTask(Measured):
    """Copy `copy` of a subject rewound to k, trained to the end of the run's schedule."""

    copy: int = 0

    @property
    def key(self) -> str:
        return f"{self.group}/copy_{self.copy}"

    @property
    def needs(self) -> tuple[str, ...]:
        return ()

    def done(self) -> bool:
        return self.copy_sha(self.copy) is not None

    def run(self, context: Context) -> None:
        study, s = self.study, self.subject
        with worker_tracking(study), unit(f"stability_{s.branch}_k{self.k}_copy{self.copy}", seed=self.seed,
                                          level=s.level):
            ensure_copy(study.replicate(self.seed), s, self.k, study.spec.training.train_spec(), self.copy,
                        device=study.device, check=context.check)


@dataclass(frozen=True)
class PathTask(Measured):
    """The linear path of every pair of a subject's copies: the instability at k."""

    @property
    def key(self) -> str:
        return f"{self.group}/paths"

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/copy_{c}" for c in range(self.study.copies))

    def done(self) -> bool:
        shas = [self.copy_sha(c) for c in range(self.study.copies)]
        folder = study_folder(self.study.runs_dir, self.study.run_id, self.seed, self.subject, self.k)
        return None not in shas and all(stored_path(folder, pair, [shas[a] for a in pair], self.study.points)
                                        is not None for pair in copy_pairs(self.study.copies))

    def run(self, context: Context) -> Instability:
        study = self.study
        return measure(study.replicate(self.seed), self.subject, self.k, study.spec.training.train_spec(),
                       copies=study.copies, points=study.points, device=study.device, check=context.check)


def worker_tracking(study: Study):
    """Where a task logs what it trains: the study's trackers under the IMP run's tracker run
    (a copy is the level unit `stability_<branch>_k<k>_copy<c>` of its seed, at the subject's level)."""
    from ticketlab.track.run import run_info
    from ticketlab.track.session import tracking

    return tracking(study.track, study.runs_dir, run_info(study.spec, study.run_id), driver=False)


def tracked_result(result: Instability) -> None:
    """A measured (or read back) instability as a summary-only unit `stability_<branch>_k<k>` of its
    seed and level: barriers, density, the copies' test accuracy; logged once per tracker run."""
    from ticketlab.track.session import record

    row = result.row()
    values = {name: row[name] for name in ("density", "k", "copies", "points", "test_barrier", "train_barrier",
                                           "endpoint_test_error")}
    values |= {f"copy_{c}_test_acc": acc for c, acc in enumerate(result.copy_test_acc)}
    record(f"stability_{result.subject.branch}_k{result.k}", values, seed=result.seed, level=result.subject.level)


def study_tasks(study: Study, seeds: Sequence[int], wanted: Sequence[Subject],
                ks: Sequence[int]) -> list[CopyTask | PathTask]:
    """Per seed, subject and k: its copies, then its paths."""
    tasks: list[CopyTask | PathTask] = []
    for seed in seeds:
        for subject in wanted:
            for k in ks:
                tasks += [CopyTask(study, seed, subject, k, c) for c in range(study.copies)]
                tasks.append(PathTask(study, seed, subject, k))
    return tasks


def run_study(study: Study, seeds: Sequence[int], wanted: Sequence[Subject], ks: Sequence[int], dataset: Dataset,
              *, report: Callable[[Instability], None] | None = None, jobs: int = 1, executor: str = "local",
              address: str | None = None) -> list[Instability]:
    """Run (or resume) a study's tasks under the run's lock; the results in the order
    (seed, subject, k). Inputs are checked once the lock is held (a run still being trained
    is refused first); measurements already stored are reported before any training."""
    remember(data_key(study.spec, study.data_dir), dataset)  # tasks run in the driver use it
    tasks = study_tasks(study, seeds, wanted, ks)
    paths = [task for task in tasks if isinstance(task, PathTask)]
    found: dict[str, Instability] = {}
    csv_path = study.runs_dir / study.run_id / CSV_NAME

    def record(task: PathTask, result: Instability) -> None:
        found[task.group] = result
        write_csv(csv_path, list(found.values()))
        tracked_result(result)
        if report is not None:
            report(result)

    def on_start() -> None:
        for seed in seeds:
            check_replicate(study.replicate(seed), wanted)
        for task in paths:
            if task.done():
                record(task, task.run(Context(no_check, print)))  # read back: nothing trains

    def on_done(task, result) -> None:
        if isinstance(task, PathTask):
            record(task, result)

    run_tasks(tasks, executor=executor, jobs=jobs, address=address, on_start=on_start, on_done=on_done,
              device=study.device)
    return [found[task.group] for task in paths]
