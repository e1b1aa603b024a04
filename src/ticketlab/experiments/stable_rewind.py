"""`rewind.iteration = "stable"`: the rewind point measured instead of guessed.

Frankle et al. (2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis") find that
IMP tickets match the dense network exactly from the iteration k on which the dense network is
*stable to SGD noise*: two copies trained from W_k end in one linearly connected minimum (test
error barrier ~ 0; they call < 2 points of error "stable"). A spec with `iteration = "stable"`
measures the dense network's instability at `candidates(T)` before IMP and rewinds to the
smallest k whose test barrier is below `rewind.stable_threshold` (the largest candidate, and
a line saying so, when none is). The spec keeps the word "stable", so the run id is fixed
before anything is measured; the choice and its evidence are a stored result of the run,
`<run>/stability_choice.json` (`analysis.stability_choice` measures and writes it).
"""

from __future__ import annotations

import json
from pathlib import Path

from ticketlab.errors import TicketlabError

STABLE = "stable"
CHOICE_FILE = "stability_choice.json"
DEFAULT_THRESHOLD = 0.02  # the paper's "stable": a test error barrier under 2 percentage points
# Candidate rewind points as fractions of training: 0 and the paper's early-training range
# (its ResNet-20 / VGG-16 become stable after 0.5-3% of training; Figures 3-4).
LADDER = (0.0, 0.0025, 0.005, 0.01, 0.02, 0.05)


def candidates(iterations: int, ladder: tuple[float, ...] = LADDER) -> list[int]:
    """The ladder's iterations for a schedule of `iterations`: round(f * T), deduplicated, in order.
    A spec sets its own ladder with `rewind.stable_candidates` (e.g. for a short schedule, where
    the paper's 0-5% of training are only a few dozen iterations)."""
    return list(dict.fromkeys(round(f * iterations) for f in ladder))


def rewind_iteration(iteration: int | str, run_dir: Path) -> int:
    """The iteration a run's survivors rewind to: its spec's `rewind.iteration`, or for "stable"
    the choice its stability measurement stored (an error while that has not been made)."""
    if iteration != STABLE:
        return iteration
    chosen = stored_choice(run_dir)
    if chosen is None:
        raise TicketlabError(f"run {run_dir.name} rewinds to the stable iteration, which is not measured yet "
                             f"({run_dir / CHOICE_FILE} is missing); run the experiment to measure it")
    return chosen


def stored_choice(run_dir: Path) -> int | None:
    """The rewind iteration stored in `<run_dir>/stability_choice.json`, or None."""
    path = run_dir / CHOICE_FILE
    if not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text())["chosen"])
    except (ValueError, KeyError, TypeError) as error:
        raise TicketlabError(f"{path} is damaged ({error}); delete it to measure again") from None
