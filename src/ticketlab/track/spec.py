"""The `[track]` section of a spec: which trackers a run streams to, and where.

Not part of the run id (`ExperimentSpec.identity` leaves it out): where a run's numbers are
watched changes none of them, so turning a tracker on for a finished run's spec resumes that
run and logs what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.errors import SpecError


@dataclass(frozen=True)
class TrackSpec:
    """`backends`: names of `ticketlab.track.TRACKERS` (tensorboard, mlflow, wandb, csv).
    `dir`: where the file-based trackers write (default `<runs_dir>/track`). `mlflow_uri`: the
    MLflow tracking server or store (default $MLFLOW_TRACKING_URI, else a SQLite store in `dir`).
    W&B runs offline unless $WANDB_MODE says otherwise."""

    backends: tuple[str, ...] = ()
    dir: str | None = None
    mlflow_uri: str | None = None
    mlflow_experiment: str = "ticketlab"
    wandb_project: str = "ticketlab"

    def __post_init__(self):
        from ticketlab.track.registry import TRACKERS

        for name in self.backends:
            if name not in TRACKERS:
                raise SpecError(f"track.backends: unknown tracker {name!r}; valid: {', '.join(TRACKERS.names())}")
        if len(set(self.backends)) != len(self.backends):
            raise SpecError(f"track.backends names a tracker twice: {list(self.backends)}")

    @property
    def on(self) -> bool:
        return bool(self.backends)


def parse_track(text: str) -> tuple[str, ...]:
    """`--track tensorboard,mlflow`: the names, checked (an unknown one is one clear line)."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    TrackSpec(backends=names)
    return names
