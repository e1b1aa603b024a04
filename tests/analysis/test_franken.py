"""Frankenmodel: A-units and trainable entries by hand; the A-logit promise on tiny data."""

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from ticketlab.analysis.franken import a_units, frankenmodel, trainable_mask
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.models import Network


def net():
    # 3 inputs -> 2 hidden -> 2 hidden -> 3 outputs (A = output 0, B = outputs 1, 2)
    return Network(OrderedDict([("flatten", nn.Flatten()), ("fc1", nn.Linear(3, 2)), ("r1", nn.ReLU()),
                                ("fc2", nn.Linear(2, 2)), ("r2", nn.ReLU()), ("fc3", nn.Linear(2, 3))]))


def b(rows):
    return torch.tensor(rows, dtype=torch.bool)


MASK = Mask({
    "fc1.weight": b([[1, 0, 0], [0, 1, 1]]),
    "fc2.weight": b([[1, 0], [0, 1]]),  # hidden-2 unit 0 reads hidden-1 unit 0 only
    "fc3.weight": b([[1, 0], [1, 1], [1, 1]]),  # output 0 (A) reads hidden-2 unit 0 only
})


def test_a_units_follow_kept_paths_back_from_the_a_outputs():
    units = a_units(net(), MASK, k=1)
    assert units["fc3.weight"].tolist() == [True, False, False]
    assert units["fc2.weight"].tolist() == [True, False]  # unit 1 reaches output 0 by no kept weight
    assert units["fc1.weight"].tolist() == [True, False]  # unit 0 -> fc2 unit 0 (A); unit 1 -> fc2 unit 1 only


def test_isolated_trains_only_pruned_weights_into_free_units_and_the_b_rows():
    t = trainable_mask(net(), MASK, 1, "isolated")
    assert t["fc1.weight"].tolist() == [[False] * 3, [True, False, False]]  # row 1 is a free unit; its pruned entry
    assert t["fc2.weight"].tolist() == [[False, False], [True, False]]  # into free unit 1, from unit 0 (pruned)
    assert t["fc3.weight"].tolist() == [[False, False], [True, True], [True, True]]  # B rows all
    assert t["fc1.bias"].tolist() == [False, False] and t["fc3.bias"].tolist() == [False, True, True]
    all_pruned = trainable_mask(net(), MASK, 1, "all_pruned")
    assert all_pruned["fc2.weight"].tolist() == [[False, True], [True, False]]  # every pruned weight
    assert all_pruned["fc3.weight"].tolist() == [[False, True], [True, True], [True, True]]
    with pytest.raises(TicketlabError, match="unknown Frankenmodel mode"):
        trainable_mask(net(), MASK, 1, "both")


def test_isolated_keeps_a_logits_and_all_pruned_measures_forgetting(tiny_dataset):
    rows = frankenmodel(tiny_dataset, k=2, levels=2, iterations=40, b_iterations=40, seed=0)
    names = [r.model.split(" (")[0] for r in rows]
    assert names == ["A-ticket", "franken isolated", "franken all_pruned", "finetune_all on B", "joint"]
    ticket, isolated, all_pruned = rows[0], rows[1], rows[2]
    # the reference is the extended ticket: every model's A logits come from products of the
    # same shapes, so isolation leaves them bit for bit (on any CPU: the same kernels either way)
    assert ticket.a_logit_change == 0.0
    assert isolated.a_logit_change == 0.0  # the promise, exact
    assert isolated.a_task_acc == ticket.a_task_acc  # so the task-aware A accuracy is the ticket's
    assert all_pruned.a_logit_change > 1e-3  # hidden activations moved: A logits changed
    assert math.isnan(rows[4].a_logit_change)
    assert isolated.b_task_acc > 0.5  # B learned (2 classes: chance 0.5) by the new rows on A's features
