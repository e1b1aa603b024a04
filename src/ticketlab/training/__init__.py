"""One training loop with evaluation, early-stop bookkeeping and enforced masks."""

from ticketlab.training.constraints import WeightConstraints
from ticketlab.training.evaluate import evaluate
from ticketlab.training.loop import Evaluation, TrainResult, make_optimizer, train
from ticketlab.training.progress import Progress
from ticketlab.training.spec import TrainSpec

__all__ = [
    "Evaluation", "Progress", "TrainResult", "TrainSpec", "WeightConstraints",
    "evaluate", "make_optimizer", "train",
]
