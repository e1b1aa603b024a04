"""Supermasks: masks that make untrained networks accurate.

Masks found on a trained network and applied to the initial weights (Zhou et al. 2019,
section 5), masks learned over frozen weights with a Bernoulli straight-through estimator
and optional dynamic weight rescaling (the same), and edge-popup's top-k masks (Ramanujan
et al. 2020).
"""

from ticketlab.supermasks.init_masks import (
    CurvePoint, InitMaskStudy, best_point, init_mask_curve, init_mask_study, level_masks, trained_weights,
)
from ticketlab.supermasks.layers import MaskedConv2d, MaskedLayer, MaskedLinear, learned_mask, to_supermask
from ticketlab.supermasks.learn import SupermaskResult, evaluate_supermask, learn_new_supermask, learn_supermask
from ticketlab.supermasks.masking import BernoulliMask, TopKMask, dwr_scale
from ticketlab.supermasks.spec import LEARNERS, SupermaskSpec, paper_spec
from ticketlab.supermasks.weights import WEIGHTS, WeightsKind, frozen_weights

__all__ = [
    "LEARNERS", "WEIGHTS", "BernoulliMask", "CurvePoint", "InitMaskStudy", "MaskedConv2d", "MaskedLayer",
    "MaskedLinear", "SupermaskResult", "SupermaskSpec", "TopKMask", "WeightsKind", "best_point", "dwr_scale",
    "evaluate_supermask", "frozen_weights", "init_mask_curve", "init_mask_study", "learn_new_supermask",
    "learn_supermask", "learned_mask", "level_masks", "paper_spec", "to_supermask", "trained_weights",
]
