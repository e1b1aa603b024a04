"""Supermask tests run on tiny tensors: one torch thread is fastest, and on a busy machine
several threads can be a hundred times slower."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
