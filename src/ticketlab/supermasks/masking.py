"""How a layer turns its real-valued scores into a 0/1 mask, with a straight-through gradient.

`BernoulliMask` is Zhou et al.'s (2019, section 5) learned supermask, as their reference code
computes it (uber-research/deconstructing-lottery-tickets, `masked_networks.py`,
`get_effective_mask`): in training m ~ Bernoulli(sigmoid(s)) and the backward pass treats m
as if it were p = sigmoid(s) (m + p - stop_gradient(p)), so dL/ds = dL/dm * sigmoid'(s). The
reference samples at test time too; `eval_mode = "deterministic"` uses s > 0 instead. One
instance serves every layer of a network, so a single attribute switches how the whole
network is evaluated. Training and test-time samples come from two seeded generators, so
how often a run evaluates does not change what it learns.

`TopKMask` is edge-popup (Ramanujan et al. 2020; allenai/hidden-networks, `utils/conv_type.py`,
`GetSubnet`): each layer keeps its `density` fraction of weights with the largest |s|, and
the gradient passes straight through to |s|.

`dwr_scale` is Zhou et al.'s dynamic weight rescaling (`--dynamic_scaling` in
`train_supermask.py`): weights in the layer / weights the current mask keeps, where the
count is the straight-through mask's sum and so is not detached from the scores.
"""

from __future__ import annotations

import torch

from ticketlab.errors import SpecError

EVAL_MODES = ("sample", "deterministic")


class BernoulliMask:
    """m ~ Bernoulli(sigmoid(s)) with a straight-through gradient; at test time per `eval_mode`."""

    def __init__(self, eval_mode: str = "sample", generator: torch.Generator | None = None,
                 eval_generator: torch.Generator | None = None):
        self.eval_mode = eval_mode
        self.generator = generator
        self.eval_generator = eval_generator

    @property
    def eval_mode(self) -> str:
        return self._eval_mode

    @eval_mode.setter
    def eval_mode(self, mode: str) -> None:
        if mode not in EVAL_MODES:
            raise SpecError(f"unknown supermask eval mode {mode!r}; valid: {', '.join(EVAL_MODES)}")
        self._eval_mode = mode

    def __call__(self, scores: torch.Tensor, training: bool) -> torch.Tensor:
        p = torch.sigmoid(scores)
        if training or self.eval_mode == "sample":
            hard = sample(p.detach(), self.generator if training else self.eval_generator)
        else:
            hard = self.hard(scores).to(scores.dtype)
        return hard + (p - p.detach())

    def hard(self, scores: torch.Tensor) -> torch.BoolTensor:
        """The deterministic mask: keep where the score is positive (keep probability > 0.5)."""
        return scores.detach() > 0


class TopKMask:
    """Keep each layer's `density` fraction of weights with the largest |score| (edge-popup)."""

    def __init__(self, density: float):
        check_density(density)
        self.density = density

    def __call__(self, scores: torch.Tensor, training: bool) -> torch.Tensor:
        magnitude = scores.abs()
        return self.hard(scores).to(scores.dtype) + (magnitude - magnitude.detach())

    def hard(self, scores: torch.Tensor) -> torch.BoolTensor:
        """Exactly the top `kept_count` |scores| (ties at the threshold by position). A k-th
        value selection is several times faster than `topk` for k near half the layer."""
        magnitude = scores.detach().abs().flatten()
        count = kept_count(magnitude.numel(), self.density)
        threshold = magnitude.kthvalue(magnitude.numel() - count + 1).values
        keep = magnitude > threshold
        ties = (magnitude == threshold).nonzero().squeeze(1)
        keep[ties[: count - int(keep.sum())]] = True
        return keep.view_as(scores)


def sample(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A 0/1 draw from Bernoulli(p): uniform < p, several times faster than `torch.bernoulli`.
    The uniforms come from the CPU `generator` and move to `p`'s device, so a run on a GPU
    samples the same masks as on the CPU."""
    return (torch.rand(p.shape, generator=generator, dtype=p.dtype).to(p.device) < p).to(p.dtype)


def kept_count(size: int, density: float) -> int:
    """Weights a layer of `size` keeps at `density`: the nearest count, at least one."""
    return max(1, round(density * size))


def check_density(density: float) -> None:
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0 < density <= 1:
        raise SpecError(f"density must be a fraction of weights kept in (0, 1], got {density!r}")


def dwr_scale(mask: torch.Tensor) -> torch.Tensor:
    """Weights in the layer / weights `mask` keeps; the count keeps its gradient (not detached)."""
    return mask.numel() / mask.sum().clamp(min=1)
