"""Early-Bird tickets (You et al. 2020, "Drawing Early-Bird Tickets: Towards More Efficient
Training of Deep Networks", ICLR 2020).

Train the dense network; at the end of every epoch draw the mask the pruning would give now,
and its normalised Hamming distance to the previous epoch's mask (`analysis.masks.hamming`:
entries kept by exactly one mask / all entries). Distances go into a FIFO of
`method.window` (5); the search stops at the first epoch whose FIFO is full with every
distance below `method.threshold` (0.1). The Early-Bird ticket is then trained for the full
schedule from that epoch's weights. If no epoch meets the rule, the last epoch's mask is
taken. Cost: search iterations + the schedule.

Which masks the rule compares (`method.mask_kind`):

- `"weights"`: the unstructured magnitude mask at `pruning.target_density` with the spec's
  one-shot allocation (the papers' layerwise rates compounded to the target, or global).
  The rule as commonly applied in the lottery-ticket setting.
- `"channels"`: the paper's own rule. The channel mask from the batch-norm scale factors
  |gamma|, pruned at `method.channel_ratio` (the paper: 30%, 50%, 70%) globally over every
  BatchNorm2d layer (`channel_mask`), as network slimming (Liu et al. 2017) prunes and the
  reference code (GATECH-EIC/Early-Bird-Tickets, `main.py`, class `EarlyBird`) draws it.
- `"auto"` (default): channels for a network with BatchNorm2d layers, weights otherwise, so
  LeNet and Conv-2/4/6 runs keep exactly the rule (and run ids) they had.

The trained ticket is **always the unstructured magnitude mask at the target density**, drawn
from the stop epoch's weights: with the channel rule, the channel masks decide only *when*
to stop. Why not prune the channels themselves (zero every incoming conv weight of a pruned
channel)? This library's masks cover conv and linear weights only; zeroing a channel's
filters leaves its batch norm emitting the constant beta (the channel is not removed), and
the level's density would be set by the channel ratio instead of `pruning.target_density`,
so the ticket would not compare with IMP at equal density. The stop epoch's channel mask
is kept in the distances document for inspection.

Differences from the reference code, stated: (1) its FIFO holds the last five *masks* and
compares the newest with each of the four older ones (the paper's text: the distances of
consecutive epochs; we follow the text, as before); (2) it prunes every channel with |gamma|
<= the value at sorted index floor(p·N), i.e. floor(p·N) + 1 channels and every tie; we
prune exactly floor(p·N), ties at the threshold broken toward the earlier channel (layers in
module order); (3) it draws a mask before the first epoch too; the rule here starts at the
first epoch end (the epoch-0 mask enters the distance matrix only); (4) it trains with the
network-slimming L1 penalty on gamma (`-sr`); here the spec's training is used unchanged.
Low-cost training as in the paper: a large `training.lr`, and `training.precision = "bf16"`.

Recorded per level (metrics at step 0): `early_bird_epoch`, the epoch at whose end the rule
fired (-1 if it never did), `epochs_searched`, the epochs of dense training spent searching
(fractional when the schedule ends inside an epoch), and `search_iterations`. The document
`early_bird_distances.json` holds every drawn mask's step and epoch, the pairwise distance
matrix (the paper's Figure 3; `plots.plot_distance_matrix` draws it) and the stop.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

import torch
from torch import nn

from ticketlab.analysis.masks import hamming, pack, packed_distance_matrix
from ticketlab.data import BatchIterator
from ticketlab.errors import SpecError
from ticketlab.masks import Mask
from ticketlab.masks.pipeline import prune
from ticketlab.methods.base import METHODS, Found, Method, Problem
from ticketlab.seeds import generator
from ticketlab.training import WeightConstraints, train

MASK_KINDS = ("auto", "weights", "channels")


class EarlyBirdRule:
    """The stopping rule: `observe(distance)` is True once the last `window` distances are
    all below `threshold`."""

    def __init__(self, window: int = 5, threshold: float = 0.1):
        self.distances: deque[float] = deque(maxlen=window)
        self.threshold = threshold

    def observe(self, distance: float) -> bool:
        self.distances.append(distance)
        return len(self.distances) == self.distances.maxlen and max(self.distances) < self.threshold


def stopping_epoch(distances: Sequence[float], window: int = 5, threshold: float = 0.1) -> int | None:
    """The 1-based index into `distances` at which the rule stops, or None."""
    rule = EarlyBirdRule(window, threshold)
    for index, distance in enumerate(distances, 1):
        if rule.observe(distance):
            return index
    return None


def batchnorm_scales(model: nn.Module) -> dict[str, torch.Tensor]:
    """The scale factor gamma (`<module>.weight`) of every BatchNorm2d layer, in module order."""
    return {f"{name}.weight": module.weight.detach().cpu().clone()
            for name, module in model.named_modules() if isinstance(module, nn.BatchNorm2d)}


def channel_mask(scales: dict[str, torch.Tensor], ratio: float) -> Mask:
    """The paper's channel mask: over all layers' channels together, prune the floor(ratio·N)
    with the smallest |gamma| and keep the others. Ties are broken toward the earlier channel
    (layers in the order given, channels in index order): a stable sort."""
    flat = torch.cat([s.abs().flatten().float() for s in scales.values()])
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[torch.sort(flat, stable=True).indices[: int(ratio * flat.numel())]] = False
    return Mask(dict(zip(scales, keep.split([s.numel() for s in scales.values()]))))


def resolved_kind(kind: str, model: nn.Module) -> str:
    """`auto` -> "channels" for a network with BatchNorm2d layers, "weights" otherwise."""
    if kind != "auto":
        return kind
    return "channels" if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) else "weights"


class _Found(Exception):
    pass


class EarlyBird(Method):
    name = "early_bird"
    params = ("window", "threshold", "mask_kind", "channel_ratio")

    def check(self, spec, train_examples=None) -> None:
        super().check(spec, train_examples)
        p = spec.method
        if p.window < 1 or not 0 < p.threshold <= 1:
            raise SpecError("method: early_bird needs window >= 1 and 0 < threshold <= 1")
        if p.mask_kind not in MASK_KINDS:
            raise SpecError(f"method.mask_kind = {p.mask_kind!r}: early_bird's masks are one of {', '.join(MASK_KINDS)}")
        if not 0 < p.channel_ratio < 1:
            raise SpecError("method.channel_ratio is the fraction of channels pruned: 0 < channel_ratio < 1")

    def find(self, problem: Problem) -> Found:
        model, p = problem.model, problem.params
        iterations = problem.schedule.iterations
        length = len(BatchIterator(problem.dataset.train, problem.schedule.batch_size, seed=problem.seed))
        kind = resolved_kind(p.mask_kind, model)
        if kind == "channels" and not batchnorm_scales(model):
            raise SpecError("method.mask_kind = \"channels\" needs BatchNorm2d layers; this network has none "
                            "(use \"weights\" or \"auto\")")
        rule = EarlyBirdRule(p.window, p.threshold)
        g = generator(problem.seed, "prune", 1)

        def weight_mask(weights, g=g) -> Mask:
            return prune("magnitude", weights, weights, Mask.ones(model), problem.allocation, g)

        def rule_mask(weights, g=g) -> Mask:
            if kind == "weights":
                return weight_mask(weights, g)
            return channel_mask(batchnorm_scales(model), p.channel_ratio)

        state: dict = {"mask": None, "step": iterations, "weights": None, "fired": False}
        steps: list[int] = []
        packed: list = []  # every drawn mask, 8 bits to a byte, for the distance matrix

        def keep(step: int, mask: Mask) -> None:
            steps.append(step)
            packed.append(pack(mask))

        # the epoch-0 mask enters the matrix, not the rule; its own generator leaves `g`'s draws
        # (tie-breaks) for the rule's masks as they were before the matrix existed
        first = rule_mask(model.state_dict(), generator(problem.seed, "prune", 1))
        total = first.total
        keep(0, first)

        def draw(step: int, _model) -> None:
            if step == 0 or (step % length and step != iterations):
                return
            weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            mask = rule_mask(weights)
            previous, state["mask"], state["weights"], state["step"] = state["mask"], mask, weights, step
            keep(step, mask)
            if previous is not None and rule.observe(hamming(previous, mask)):
                state["fired"] = True
                raise _Found

        try:
            train(model, problem.dataset, problem.schedule, seed=problem.seed, callbacks=[draw])
        except _Found:
            pass
        model.load_state_dict(state["weights"])
        ticket = state["mask"] if kind == "weights" else weight_mask(state["weights"])
        result = train(model, problem.dataset, problem.schedule, seed=problem.seed,
                       constraints=WeightConstraints(model, ticket), progress=problem.progress)
        step = state["step"]
        stop_epoch = step // length if state["fired"] else -1
        document = {
            "mask_kind": kind, "channel_ratio": p.channel_ratio if kind == "channels" else None,
            "window": p.window, "threshold": p.threshold, "epoch_iterations": length,
            "steps": steps, "epochs": [s / length for s in steps],
            "distances": packed_distance_matrix(packed, total),
            "stop_step": step, "stop_epoch": stop_epoch,
        }
        if kind == "channels":
            document["stop_channel_mask"] = {name: keep.int().tolist() for name, keep in state["mask"].items()}
        metrics = {"early_bird_epoch": stop_epoch, "epochs_searched": step / length, "search_iterations": step}
        return Found(ticket, result, step + iterations, metrics, {"early_bird_distances": document})


METHODS.register(EarlyBird.name, EarlyBird())
