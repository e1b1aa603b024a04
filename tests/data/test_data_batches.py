"""BatchIterator: coverage, seeding, epochs."""

import pytest
import torch

from ticketlab.data import BatchIterator, Split
from ticketlab.errors import DataError


def split(n=23):
    return Split(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1), torch.arange(n))


def order(batches):
    return torch.cat([y for _, y in batches]).tolist()


def test_each_epoch_covers_every_example_once():
    it = BatchIterator(split(), 5, seed=0)
    batches = list(it)
    assert len(it) == len(batches) == 5
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    assert sorted(order(batches)) == list(range(23))
    for x, y in batches:
        assert torch.equal(x.view(-1).long(), y)


def test_drop_last_and_no_shuffle():
    it = BatchIterator(split(), 5, seed=0, shuffle=False, drop_last=True)
    assert len(it) == 4
    assert order(it) == list(range(20))


def test_order_is_seeded_and_changes_every_epoch():
    a, b = BatchIterator(split(), 4, seed=7), BatchIterator(split(), 4, seed=7)
    first, second = order(a), order(a)
    assert first == order(b) and second == order(b)
    assert first != second
    assert order(BatchIterator(split(), 4, seed=8)) != first
    assert order(BatchIterator(split(), 4, seed=7).epoch(1)) == second


def test_forever_continues_across_epochs():
    it = BatchIterator(split(), 4, seed=3)
    stream = it.forever()
    drawn = [next(stream) for _ in range(2 * len(it) + 1)]
    fresh = BatchIterator(split(), 4, seed=3)
    assert order(drawn[: len(it)]) == order(fresh.epoch(0))
    assert order(drawn[len(it) : 2 * len(it)]) == order(fresh.epoch(1))
    assert order(drawn[-1:]) == order(fresh.epoch(2))[:4]


def test_bad_sizes():
    with pytest.raises(DataError, match="batch_size must be at least 1"):
        BatchIterator(split(), 0, seed=0)
    empty = BatchIterator(split(0), 4, seed=0)
    assert len(empty) == 0 and list(empty) == []
    with pytest.raises(DataError, match="cannot draw batches forever"):
        next(empty.forever())


def test_a_negative_seed_is_a_data_error_not_a_numpy_traceback():
    with pytest.raises(DataError, match="batch seed must be a non-negative integer, got -1"):
        BatchIterator(split(), 4, seed=-1)
    assert len(list(BatchIterator(split(), 4, seed=2**63 - 1))) > 0  # derived 63-bit seeds stay valid
