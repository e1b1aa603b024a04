"""Trackers: stream a run's numbers to TensorBoard, MLflow, W&B or CSV while it trains.

One small interface (`base.Tracker`), one registered implementation per backend
(`TRACKERS`), chosen by `--track NAME,...` or a spec's `[track]` section (never part of the
run id). Training only queues records (`hub`); levels are logged where they train
(`level`), the run's description and figures by the driver (`run`); a ledger per
(run, seed, branch) makes a resumed run append instead of repeating (`ledger`).
See docs/trackers.md.
"""

from ticketlab.track.registry import TRACKERS
from ticketlab.track.spec import TrackSpec, parse_track

__all__ = ["TRACKERS", "TrackSpec", "parse_track"]
