"""Masks: the Mask type, scoring criteria, per-layer allocation and thresholding."""

from ticketlab.masks.criteria import CRITERIA, Criterion, criterion
from ticketlab.masks.mask import LayerDensity, Mask

__all__ = ["CRITERIA", "Criterion", "LayerDensity", "Mask", "criterion"]
