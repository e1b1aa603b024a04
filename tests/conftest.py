"""Shared fixtures.

Tests train tiny models, for which one torch thread is fastest and immune to the other
core being busy.
"""

import pytest
import torch

from tinydata import make_tiny_dataset

torch.set_num_threads(1)


@pytest.fixture
def tiny_dataset():
    return make_tiny_dataset()
