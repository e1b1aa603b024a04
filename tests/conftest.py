"""Shared fixtures."""

import pytest

from tinydata import make_tiny_dataset


@pytest.fixture
def tiny_dataset():
    return make_tiny_dataset()
