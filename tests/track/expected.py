"""What the store holds of a run: the numbers every tracker must show, read independently."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from ticketlab.store import ResultsStore


def levels(runs_dir: Path, run_id: str):
    return ResultsStore(runs_dir, readonly=True).levels(run_id)


def evaluations(runs_dir: Path, row) -> dict[int, float]:
    """{iteration: test accuracy} of a level's stored evaluations."""
    store = ResultsStore(runs_dir, readonly=True)
    return {step: value for step, name, value in store.metrics(row.run_id, row.seed, row.branch, row.level)
            if name == "test_acc"}


def layer_densities(runs_dir: Path, row) -> dict[str, float]:
    """Per layer, the fraction kept by the level's stored mask file."""
    mask = load_file(Path(runs_dir) / row.run_id / f"seed_{row.seed}" / row.branch / f"level_{row.level}" / "mask.safetensors")
    return {name: float(keep.float().mean()) for name, keep in mask.items()}
