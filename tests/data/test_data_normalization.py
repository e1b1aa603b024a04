import pytest
import torch

from ticketlab.data import load_dataset
from ticketlab.errors import DataError


def test_unit_normalization_scales_pixels_to_0_1_and_standard_centres_them():
    unit = load_dataset("digits", normalization="unit")
    standard = load_dataset("digits")
    assert unit.train.x.min() == 0 and unit.train.x.max() == 1  # digits' pixels run 0..16
    assert abs(float(standard.train.x.mean())) < 0.05
    assert torch.equal(unit.train.y, standard.train.y)


def test_unknown_normalization_lists_the_valid_ones():
    with pytest.raises(DataError, match="standard, unit"):
        load_dataset("digits", normalization="minmax")
