"""Instability of a stored run's networks (Frankle et al. 2020), its files beside the run.

A *subject* is what is rewound to k and copied: the dense network (IMP level 0), an IMP
ticket of level L (its mask, kept weights at their values at k: m * W_k), or a baseline of
level L with the ticket's density: `random_mask` (a random mask, the run's stored one or
drawn as that branch draws it, weights W_k) or `reinit` (the ticket's mask, kept weights
re-drawn as that branch draws them). The branches' own `start_weights` make these, with the
run's rewind point moved to k (`_RewoundTo`), so a subject at the run's rewind iteration
starts exactly where that level of the run started. Pruned weights are held at zero, as in
the paper, during training and along the path.

Files, under `<run>/seed_<s>/stability/<branch>/level_<L>/k_<k>/`: `copy_<c>.safetensors`
(+ `.sha256`) and `path_<a>_<b>.json`; one CSV row per (seed, branch, level, k) in
`<run>/stability.csv`. A copy whose file verifies (and was made from the same stored mask
or initial weights) is not retrained and a path whose copies are unchanged is not
re-evaluated, so an interrupted study resumes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors import safe_open

from ticketlab.analysis.stability import (
    DEFAULT_COPIES, DEFAULT_POINTS, LinearPath, ModelFn, State, _check_count, check_iteration, copy_seed,
    linear_path, train_copy, weights_at,
)
from ticketlab.analysis.stability_report import CSV_NAME  # noqa: F401 (where callers have found it)
from ticketlab.data import Dataset
from ticketlab.engine.lock import no_check
from ticketlab.errors import TicketlabError
from ticketlab.experiments.branches import BRANCHES, MAIN
from ticketlab.experiments.imp import Replicate
from ticketlab.masks import Mask
from ticketlab.store import ResultsStore, atomic_write_bytes, load_tensors, save_tensors, sha256_file
from ticketlab.store.sidecars import checksum_file, read_checksum, write_checksum
from ticketlab.training import TrainSpec, evaluate

STUDY_BRANCHES = (MAIN, "reinit", "random_mask")  # the subjects of the paper's Sections 4-5
STUDY_FOLDER = "stability"  # under each seed's folder: <branch>/level_<L>/k_<k>/


@dataclass(frozen=True)
class Subject:
    """A network of the run to rewind and copy: level 0 is the dense network (branch imp)."""

    branch: str
    level: int

    @property
    def label(self) -> str:
        return "dense" if self.level == 0 else f"{self.branch} L{self.level}"


def subjects(levels: Sequence[int], branches: Sequence[str]) -> list[Subject]:
    """Every (branch, level) asked for. Level 0 is the dense network, which every branch shares
    (a baseline's level 0 is the dense level): it is measured once, as imp level 0."""
    unknown = [b for b in branches if b not in STUDY_BRANCHES]
    if unknown:
        raise TicketlabError(f"unknown branch {unknown[0]!r} for a stability study; valid: {', '.join(STUDY_BRANCHES)}")
    found = [Subject(MAIN, 0)] if 0 in levels else []
    found += [Subject(b, level) for level in levels if level > 0 for b in branches]
    if not found:
        raise TicketlabError("nothing to measure: give at least one level (0: the dense network) and, for "
                             "levels >= 1, at least one branch")
    return found


@dataclass(frozen=True)
class Instability:
    """The copies of one subject of one seed from iteration k and the linear path of every pair
    of them; `test_barrier`/`train_barrier` are the mean over pairs (the paper's instability)."""

    seed: int
    subject: Subject
    density: float
    k: int
    copy_seeds: list[int]
    copy_test_acc: list[float]
    pairs: list[tuple[int, int]]
    paths: list[LinearPath]
    folder: Path

    @property
    def test_barrier(self) -> float:
        return sum(p.test_barrier for p in self.paths) / len(self.paths)

    @property
    def train_barrier(self) -> float:
        return sum(p.train_barrier for p in self.paths) / len(self.paths)

    def row(self) -> dict:
        """The CSV row: what was measured, barriers, the endpoints' mean test error."""
        ends = [(p.test_error[0] + p.test_error[-1]) / 2 for p in self.paths]
        return {"seed": self.seed, "branch": self.subject.branch, "level": self.subject.level,
                "density": self.density, "k": self.k, "copies": len(self.copy_seeds),
                "points": len(self.paths[0].alphas), "bn_batches": self.paths[0].bn_batches,
                "test_barrier": self.test_barrier, "train_barrier": self.train_barrier,
                "endpoint_test_error": sum(ends) / len(ends)}


class _RewoundTo(Replicate):
    """A stored replicate, read-only, with its rewind point moved to iteration k: a branch's
    `start_weights` then gives that branch's level rewound to k. Masks are the stored ones
    (a baseline's mask not stored is drawn as its branch draws it, and not saved)."""

    def __init__(self, replicate: Replicate, weights_k: State):
        super().__init__(replicate.spec, replicate.run_id, replicate.seed, replicate.store, replicate.dataset)
        self.weights_k = weights_k

    def rewind_weights(self) -> State:
        return self.weights_k

    def save(self, path, tensors, record=True):
        raise TicketlabError(f"a stability study does not write the run's files ({path})")

    def mask(self, branch: str, level: int) -> Mask:
        if level == 0:
            return Mask.ones(self.model)
        stored = self.load(self.level_dir(branch, level) / "mask.safetensors")
        if stored is not None:
            return Mask(stored)
        if branch == MAIN:  # a ticket is a result of the run, never made here
            raise TicketlabError(f"run {self.run_id} seed {self.seed}: imp level {level} has no stored mask")
        return BRANCHES.get(branch).mask(self, level)


def masked(state: State, mask: Mask | None) -> State:
    """`state` with every pruned weight exactly zero (the paper's subnetwork m * W)."""
    if mask is None:
        return dict(state)
    return {name: torch.where(mask[name], value, torch.zeros_like(value)) if name in mask else value
            for name, value in state.items()}


def _stored_rewind_point(replicate: Replicate) -> int | None:
    """The run's rewind iteration, None while a "stable" one is not measured yet."""
    try:
        return replicate.rewind_iteration
    except TicketlabError:
        return None


def dense_weights_at(replicate: Replicate, k: int, schedule: TrainSpec, device=None) -> State:
    """The dense network's weights at k: the stored initial weights (k = 0) or rewind point (k =
    the run's rewind iteration), else the dense run's first k iterations replayed from init."""
    init = replicate.load(replicate.root / "init.safetensors")
    if init is None:
        raise TicketlabError(f"run {replicate.run_id} seed {replicate.seed} has no stored initial weights "
                             f"({replicate.root / 'init.safetensors'} is missing or does not verify); run it first")
    if k == 0:
        return init
    if k == _stored_rewind_point(replicate):
        stored = replicate.load(replicate.root / "rewind.safetensors")
        if stored is not None:
            return stored
    model = replicate.new_model(replicate.seed)
    model.load_state_dict(init)
    return weights_at(model, replicate.dataset, schedule, k, seed=replicate.seed, device=device)


def subject_start(replicate: Replicate, subject: Subject, mask: Mask | None, weights_k: State) -> State:
    """The subject's start weights at k, pruned weights zero: its branch's start weights with the
    run's rewind point moved to k (the dense network: W_k itself)."""
    if subject.level == 0:
        return weights_k
    view = _RewoundTo(replicate, weights_k)
    return masked(BRANCHES.get(subject.branch).start_weights(view, subject.level), mask)


def source_sha(store: ResultsStore, run_id: str, seed: int, subject: Subject) -> str:
    """The recorded checksum of what a subject's copies derive from: the initial weights
    (dense) or the IMP level's mask (tickets and both baselines); a copy made from other
    files is stale."""
    name = "init.safetensors" if subject.level == 0 else f"{MAIN}/level_{subject.level}/mask.safetensors"
    return store.artifact_sha(f"{run_id}/seed_{seed}/{name}") or ""


def study_folder(runs_dir: Path, run_id: str, seed: int, subject: Subject, k: int) -> Path:
    """Where the copies and paths of one (seed, subject, k) live."""
    return (Path(runs_dir) / run_id / f"seed_{seed}" / STUDY_FOLDER / subject.branch / f"level_{subject.level}"
            / f"k_{k}")


def verified_copy_sha(path: Path, source: str) -> str | None:
    """The checksum of the copy at `path` when its sidecar matches and it was made from `source`."""
    sidecar = checksum_file(path.parent, path.name)
    if not path.is_file() or not sidecar.is_file():
        return None
    sha = sha256_file(path)
    if read_checksum(sidecar) != sha:
        return None
    with safe_open(str(path), "pt") as handle:
        if json.loads((handle.metadata() or {}).get("ticketlab", "{}")).get("source_sha256") != source:
            return None
    return sha


_START: dict = {}  # the last subject's start weights (key -> state): its copies share one replay of W_k


def _start_weights(replicate: Replicate, subject: Subject, mask: Mask | None, k: int, schedule: TrainSpec,
                   device, source: str) -> State:
    """The subject's start weights at k, computed once for consecutive copies in one process."""
    key = (str(replicate.root), subject, k, str(device), source)
    if key not in _START:
        _START.clear()
        _START[key] = subject_start(replicate, subject, mask, dense_weights_at(replicate, k, schedule, device))
    return _START[key]


def subject_mask(replicate: Replicate, subject: Subject) -> Mask | None:
    """The subject's mask (None: the dense network)."""
    return None if subject.level == 0 else _RewoundTo(replicate, {}).mask(subject.branch, subject.level)


def _model_fn(replicate: Replicate, device) -> ModelFn:
    return (lambda: replicate.new_model(0)) if device is None else (lambda: replicate.new_model(0).to(device))


def ensure_copy(replicate: Replicate, subject: Subject, k: int, schedule: TrainSpec, copy: int, *,
                device=None, check: Callable[[], None] = no_check) -> tuple[dict[str, torch.Tensor], str]:
    """Copy `copy` of a subject at k and its file's SHA-256: the stored file when it verifies, else
    trained and written (after `check()`, the engine's guard against writing for a dead driver)."""
    path = study_folder(replicate.store.runs_dir, replicate.run_id, replicate.seed, subject, k) / \
        f"copy_{copy}.safetensors"
    source = source_sha(replicate.store, replicate.run_id, replicate.seed, subject)
    sha = verified_copy_sha(path, source)
    if sha is not None:
        return load_tensors(path), sha
    mask = subject_mask(replicate, subject)
    start = _start_weights(replicate, subject, mask, k, schedule, device, source)
    trained = train_copy(_model_fn(replicate, device), start, replicate.dataset, schedule, k, seed=replicate.seed,
                         copy=copy, mask=mask, device=device)
    check()
    sha = save_tensors(path, trained.weights, {
        "run_id": replicate.run_id, "seed": str(replicate.seed), "branch": subject.branch,
        "level": str(subject.level), "k": str(k), "copy": str(copy), "copy_seed": str(trained.seed),
        "source_sha256": source})
    write_checksum(path.parent, path.name, sha)
    return trained.weights, sha


def measure(replicate: Replicate, subject: Subject, k: int, schedule: TrainSpec, *, copies: int, points: int,
            device=None, check: Callable[[], None] = no_check) -> Instability:
    """One subject of one replicate at iteration k: its copies (trained unless stored) and the
    linear path of each pair (evaluated unless stored for the same copies)."""
    folder = study_folder(replicate.store.runs_dir, replicate.run_id, replicate.seed, subject, k)
    model_fn = _model_fn(replicate, device)
    mask = subject_mask(replicate, subject)
    finals, shas, accuracies = [], [], []
    for c in range(copies):
        weights, sha = ensure_copy(replicate, subject, k, schedule, c, device=device, check=check)
        finals.append(weights)
        shas.append(sha)
        model = model_fn()
        model.load_state_dict(weights)
        here = next(model.parameters()).device
        accuracies.append(evaluate(model, replicate.dataset.test.x.to(here), replicate.dataset.test.y.to(here))[1])
    pairs = copy_pairs(copies)
    paths = [_path(replicate, folder, k, (a, b), (finals[a], finals[b]), (shas[a], shas[b]), points, mask,
                   model_fn, check) for a, b in pairs]
    density = 1.0 if mask is None else mask.density
    return Instability(replicate.seed, subject, density, k, [copy_seed(replicate.seed, c) for c in range(copies)],
                       accuracies, pairs, paths, folder)


def copy_pairs(copies: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(copies) for b in range(a + 1, copies)]


def stored_path(folder: Path, pair: tuple[int, int], shas: Sequence[str], points: int) -> LinearPath | None:
    """The stored path of a pair when it was made from the copies of checksums `shas` at `points` alphas."""
    record = folder / f"path_{pair[0]}_{pair[1]}.json"
    stored = json.loads(record.read_text()) if record.is_file() else {}
    if stored.get("copies_sha256") != list(shas) or len(stored.get("alphas", ())) != points \
            or "train_examples" not in stored:  # paths stored before the train sample are measured again
        return None
    return LinearPath(**{f.name: stored[f.name] for f in dataclasses.fields(LinearPath)})


def _path(replicate, folder: Path, k: int, pair, finals, shas, points: int, mask, model_fn, check) -> LinearPath:
    """The stored path of a pair when it was made from these copies at `points` alphas, else evaluated."""
    path = stored_path(folder, pair, shas, points)
    if path is not None:
        return path
    path = linear_path(model_fn, *finals, replicate.dataset, points=points, mask=mask, seed=replicate.seed)
    check()
    atomic_write_bytes(folder / f"path_{pair[0]}_{pair[1]}.json", json.dumps(path.to_dict() | {
        "seed": replicate.seed, "k": k, "copies": list(pair),
        "copy_seeds": [copy_seed(replicate.seed, c) for c in pair], "copies_sha256": list(shas)}, indent=1).encode())
    return path


def _check_levels(replicate: Replicate, wanted: list[Subject]) -> None:
    """Every ticket level asked for exists in the run and is finished, before any training."""
    spec = replicate.spec
    for subject in wanted:
        if subject.level == 0:
            continue
        if subject.level > spec.pruning.levels:
            raise TicketlabError(f"run {replicate.run_id} has levels 0..{spec.pruning.levels}, not level "
                                 f"{subject.level}")
        if replicate.finished(MAIN, subject.level) is None:
            raise TicketlabError(f"run {replicate.run_id} seed {replicate.seed}: imp level {subject.level} is not "
                                 "finished (or its files no longer verify); run the experiment first")
    if any(s.branch == MAIN and s.level > 0 for s in wanted) and spec.ticket.mask0 != "zero":
        raise TicketlabError(f"run {replicate.run_id} holds pruned weights by mask-0 action {spec.ticket.mask0!r}; "
                             "a stability study holds them at zero (the paper's subnetworks)")


def instability_study(runs_dir: str | Path, run: str, ks: Sequence[int], *, levels: Sequence[int] = (0,),
                      branches: Sequence[str] = (MAIN,), copies: int = DEFAULT_COPIES,
                      points: int = DEFAULT_POINTS, seeds: Sequence[int] | None = None,
                      data_dir: str | Path | None = None, dataset: Dataset | None = None, device=None,
                      report: Callable[[Instability], None] | None = None, jobs: int = 1, executor: str = "local",
                      address: str | None = None, track=None) -> list[Instability]:
    """The instability of a stored run's networks at each k of `ks`, per seed (default: the
    run's seeds): the dense network for level 0, and the tickets and baselines (`branches`) of
    each level >= 1 in `levels`. Each copy is an engine task (`stability_tasks`), run on `jobs`
    local processes or Ray under the run's lock; every input is checked before any training,
    and rows go to `<run>/stability.csv` as each (seed, subject, k) finishes.

    With `track` (a `TrackSpec`), copies stream their training and each row its barriers to
    the trackers, under the IMP run's tracker run (`analysis.stability_tasks`), with the
    stability figures as its artifacts."""
    from ticketlab.analysis.stability_tasks import Study, run_study
    from ticketlab.engine.executors import check_executor
    from ticketlab.experiments import spec_from_dict
    from ticketlab.experiments.tasks import load_data
    from ticketlab.store.report import resolve_run
    from ticketlab.training.device import resolved_name

    _check_count("copies", copies, 2)
    _check_count("points", points, 2)
    if jobs < 1:
        raise TicketlabError(f"jobs must be at least 1, got {jobs}")
    check_executor(executor, address)
    store = ResultsStore(runs_dir, readonly=True)
    run_id = resolve_run(store, run)
    spec = spec_from_dict({k: v for k, v in (store.run_spec(run_id) or {}).items() if k != "identity"})
    if spec.method.name != "imp":
        raise TicketlabError(f"run {run_id} is a {spec.method.name} run; a stability study reads IMP runs")
    schedule = spec.training.train_spec()
    ks = list(dict.fromkeys(ks))
    if not ks:
        raise TicketlabError("give at least one rewind iteration k")
    for k in ks:
        check_iteration(k, schedule)
    wanted = subjects(list(dict.fromkeys(levels)), list(dict.fromkeys(branches)))
    seeds = list(spec.seeds) if seeds is None else list(dict.fromkeys(seeds))
    unknown = [s for s in seeds if s not in spec.seeds]
    if unknown:
        raise TicketlabError(f"run {run_id} has no seed {', '.join(map(str, unknown))}; its seeds: "
                             f"{', '.join(map(str, spec.seeds))}")
    data_dir = Path(data_dir) if data_dir is not None else None
    if dataset is None:
        dataset = load_data(spec, data_dir)
    device = resolved_name(device) if isinstance(device, str) else (None if device is None else str(device))
    from ticketlab.track.run import run_info
    from ticketlab.track.session import tracking

    with tracking(track, store.runs_dir, run_info(spec, run_id)) as session:
        study = Study(spec, run_id, store.runs_dir, data_dir, device, copies, points,
                      session.spec if session is not None else None)
        results = run_study(study, seeds, wanted, ks, dataset, report=report, jobs=jobs, executor=executor,
                            address=address)
        if session is not None:
            from ticketlab.plots.stability import plot_stability

            session.add_figures(plot_stability(store.runs_dir / run_id))
    return results


def check_replicate(replicate: Replicate, wanted: Sequence[Subject]) -> None:
    """Refuse, in one line and before any training, a seed without stored initial weights or
    without a finished level asked for."""
    if replicate.load(replicate.root / "init.safetensors") is None:
        dense_weights_at(replicate, 0, replicate.spec.training.train_spec())  # raises its one-line error
    _check_levels(replicate, list(wanted))


def _key(row: dict) -> tuple:
    return int(row["seed"]), row["branch"], int(row["level"]), int(row["k"])


def write_csv(path: Path, results: Sequence[Instability]) -> None:
    """The rows of this study, merged with the rows the file holds for other (seed, branch, level, k)."""
    rows = {}
    if path.is_file():
        rows = {_key(r): r for r in csv.DictReader(io.StringIO(path.read_text()))}
    rows.update({_key(r.row()): r.row() for r in results})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(results[0].row()), lineterminator="\n")
    writer.writeheader()
    for key in sorted(rows):
        writer.writerow(rows[key])
    atomic_write_bytes(path, out.getvalue().encode())
