"""The tracker registry: name -> backend class. Backends import their packages only when a
run uses them, so listing names (and validating specs) costs nothing."""

from __future__ import annotations

from ticketlab.registry import Registry

TRACKERS: Registry[type] = Registry("tracker")


def _register_builtin() -> None:
    from ticketlab.track.csv_tracker import CsvTracker
    from ticketlab.track.mlflow_tracker import MlflowTracker
    from ticketlab.track.tensorboard_tracker import TensorboardTracker
    from ticketlab.track.wandb_tracker import WandbTracker

    for cls in (CsvTracker, MlflowTracker, TensorboardTracker, WandbTracker):
        TRACKERS.register(cls.name, cls)


_register_builtin()
