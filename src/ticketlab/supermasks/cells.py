"""One cell of the Table 1 plan as an engine task: compute it, or find it already stored.

A cell writes `<runs_dir>/zhou2019/cells/<id>.safetensors` (the trained weights, or a learned
mask) atomically, then records its numbers, config and the file's checksum in the results
store; a cell counts as finished when the store holds it under the same config and its file
verifies, so a run killed at any moment resumes by recomputing only unfinished cells.
Cells of older versions (a JSON file beside the tensors) are imported on first sight.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import ticketlab
from ticketlab.data import Dataset, load_dataset
from ticketlab.engine import Context, cached
from ticketlab.models import Network, build_model
from ticketlab.store import ResultsStore, load_tensors, save_tensors, sha256_file
from ticketlab.supermasks.init_masks import best_point, init_mask_curve, level_masks
from ticketlab.supermasks.learn import learn_supermask
from ticketlab.supermasks.spec import SupermaskSpec
from ticketlab.supermasks.zhou2019 import Cell
from ticketlab.track.base import RunInfo
from ticketlab.track.session import note
from ticketlab.track.spec import TrackSpec
from ticketlab.training import Progress, TrainResult, TrainSpec, train
from ticketlab.training.device import place

STUDY = "zhou2019"


def cell_file(runs_dir: Path, cell_id: str) -> Path:
    return Path(runs_dir) / STUDY / "cells" / f"{cell_id}.safetensors"


def _relative(runs_dir: Path, cell_id: str) -> str:
    return str(cell_file(runs_dir, cell_id).relative_to(runs_dir))


def load_result(store: ResultsStore, cell: Cell) -> dict | None:
    """The stored result of `cell`, if it finished under the same config and its file verifies."""
    recorded = store.cell(STUDY, cell.id)
    if recorded is None or recorded[0] != cell.config:
        return None
    path = cell_file(store.runs_dir, cell.id)
    expected = store.artifact_sha(_relative(store.runs_dir, cell.id))
    if expected is None or not path.exists() or sha256_file(path) != expected:
        return None
    return recorded[1]


def import_legacy_cells(store: ResultsStore, cells: list[Cell], folders: list[Path]) -> int:
    """Record cells that an older version left as `<folder>/cells/<id>.json` + `.safetensors`
    (same config, tensors readable); returns how many were imported."""
    imported = 0
    for cell in cells:
        if load_result(store, cell) is not None:
            continue
        for folder in folders:
            try:
                result = json.loads((Path(folder) / "cells" / f"{cell.id}.json").read_text())
            except (OSError, ValueError):
                continue
            tensors = load_tensors(Path(folder) / "cells" / f"{cell.id}.safetensors")
            if result.get("config") != cell.config or tensors is None:
                continue
            _store_cell(store, cell, result, tensors)
            imported += 1
            break
    return imported


def _store_cell(store: ResultsStore, cell: Cell, result: dict, tensors: dict) -> None:
    path = cell_file(store.runs_dir, cell.id)
    sha = save_tensors(path, tensors, metadata={"cell": cell.id})
    store.record_cell(STUDY, cell.id, cell.config, result, result.get("code_version", ticketlab.__version__),
                      {_relative(store.runs_dir, cell.id): (sha, path.stat().st_size)})


def cell_data(config: dict, data_dir: Path | None) -> Dataset:
    """A cell's data set, loaded once per process; the validation split is fixed by data seed 0."""
    key = ("cell", config["dataset"], config.get("normalization", "standard"), str(data_dir))
    return cached(key, lambda: load_dataset(key[1], data_dir, normalization=key[2]))


@dataclass(frozen=True)
class CellTask:
    cell: Cell
    runs_dir: Path
    data_dir: Path | None
    device: str | None = None  # where the cell trains and evaluates (resolved); not part of the cell's config
    track: TrackSpec | None = None  # trackers, and the tracker run the cell logs to (`track_cells`)
    tracker_run: RunInfo | None = None

    @property
    def key(self) -> str:
        return f"cell/{self.cell.id}"

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(f"cell/{need}" for need in self.cell.needs)

    @property
    def locks(self) -> tuple[Path, ...]:
        return (Path(self.runs_dir) / STUDY / ".lock",)

    def done(self) -> bool:
        return load_result(ResultsStore(self.runs_dir), self.cell) is not None

    def run(self, context: Context) -> dict:
        from ticketlab.track.session import tracking, unit

        store = ResultsStore(self.runs_dir)
        with tracking(self.track, self.runs_dir, self.tracker_run, driver=False), \
                unit(cell_branch(self.cell), seed=self.cell.config["seed"]):
            result, tensors = run_cell(self.cell, cell_data(self.cell.config, self.data_dir), store,
                                       context.show_progress, self.device)
            note(**cell_numbers(result))
        context.check()
        _store_cell(store, self.cell, result, tensors)
        return result


def cell_branch(cell: Cell) -> str:
    """A cell's unit name in the trackers: `<network>_<column>` (unique within a plan)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{cell.network}_{cell.column}")


def cell_numbers(result: dict) -> dict[str, float]:
    """The numbers of a cell's result a tracker shows (accuracy, density, seconds, ...)."""
    return {name: float(value) for name, value in result.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def track_cells(cells: list[Cell], store: ResultsStore) -> None:
    """Every finished cell as a summary-only unit, once per tracker run: cells reused from the
    store, or finished while the trackers were off (nothing when untracked)."""
    from ticketlab.track.session import record

    for cell in cells:
        result = load_result(store, cell)
        if result is not None:
            record(cell_branch(cell), cell_numbers(result), seed=cell.config["seed"])


def run_cell(cell: Cell, dataset: Dataset, store: ResultsStore, show_progress: bool = False,
             device: str | None = None) -> tuple[dict, dict]:
    """Compute `cell` on `dataset` (the network and the data on `device`, a resolved name, when
    given): its result and its tensors, on the CPU (nothing is written here)."""
    started = time.perf_counter()
    config = cell.config
    model = build_model(config["model"], dataset.input_shape, dataset.num_classes, seed=config["seed"])
    dataset = place(model, dataset, device)
    steps = _iterations(config, dataset)
    with Progress(f"{cell.network} {cell.column}", steps, enabled=show_progress and steps > 0) as progress:
        result, tensors = _KINDS[config["kind"]](cell, model, dataset, store, progress)
    result |= dict(seconds=time.perf_counter() - started, config=config, code_version=ticketlab.__version__)
    return result, {name: value.detach().cpu() for name, value in tensors.items()}


def _iterations(config: dict, dataset: Dataset) -> int:
    """Training steps of the cell, for its progress bar (init masks train nothing)."""
    if config["kind"] == "trained":
        return config["training"]["iterations"]
    if config["kind"] == "learn":
        return SupermaskSpec(**config["supermask"]).train_spec(len(dataset.train)).iterations
    return 0


def _trained(cell: Cell, model: Network, dataset: Dataset, store: ResultsStore, progress: Progress):
    training = train(model, dataset, TrainSpec(**cell.config["training"]), seed=cell.config["seed"],
                     progress=progress)
    result = dict(accuracy=training.final.test_acc, early_stop_iteration=training.early_stop.step,
                  early_stop_acc=training.early_stop.test_acc, curve=_curve(training))
    return result, model.state_dict()


def _init_mask(cell: Cell, model: Network, dataset: Dataset, store: ResultsStore, progress: Progress):
    config = cell.config
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    device = next(iter(initial.values())).device
    trained = {name: value.to(device) for name, value in load_tensors(cell_file(store.runs_dir, cell.needs[0])).items()}
    masks = level_masks(model, config["model"], initial, trained, dataset, criterion=config["criterion"],
                        levels=config["levels"], seed=config["seed"])
    points = init_mask_curve(model, initial, masks, dataset, config["weights"])
    best = best_point(points)
    result = dict(accuracy=best.test_acc, best_level=best.level, density=best.density,
                  curve=[[point.level, point.density, point.test_acc] for point in points])
    return result, dict(masks[best.level].items())


def _learned(cell: Cell, model: Network, dataset: Dataset, store: ResultsStore, progress: Progress):
    config = cell.config
    learned = learn_supermask(model, dataset, SupermaskSpec(**config["supermask"]), seed=config["seed"],
                              evaluations=config["evaluations"], progress=progress)
    result = dict(accuracy=learned.accuracy, sampled_accs=learned.sampled_accs,
                  deterministic_acc=learned.deterministic_acc, expected_density=learned.expected_density,
                  density=learned.mask.density, curve=_curve(learned.training))
    return result, dict(learned.mask.items())


_KINDS = {"trained": _trained, "init_mask": _init_mask, "learn": _learned}


def _curve(training: TrainResult) -> list[list[float]]:
    """[step, validation accuracy, test accuracy] at every evaluation of a training run."""
    return [[e.step, e.val_acc, e.test_acc] for e in training.evaluations]
