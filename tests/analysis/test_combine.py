"""Combining two tickets: the union/average rule by hand, and the command on a tiny run."""

import pytest
import torch

from ticketlab.analysis.combine import combine_tickets, intersection, merge_weights, union
from ticketlab.cli import main
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.store import ResultsStore

MA = Mask({"w": torch.tensor([1, 1, 0, 0], dtype=torch.bool)})
MB = Mask({"w": torch.tensor([0, 1, 1, 0], dtype=torch.bool)})
WA = {"w": torch.tensor([2.0, 4.0, 0.0, 0.0]), "b": torch.tensor([1.0])}
WB = {"w": torch.tensor([0.0, 8.0, -6.0, 0.0]), "b": torch.tensor([3.0])}


def test_union_takes_each_weight_from_its_ticket_and_averages_shared_ones():
    mask = union(MA, MB)
    assert mask["w"].tolist() == [True, True, True, False]
    merged = merge_weights(MA, WA, MB, WB, mask)
    assert merged["w"].tolist() == [2.0, 6.0, -6.0, 0.0]  # A only, mean of 4 and 8, B only, neither
    assert merged["b"].tolist() == [2.0]  # biases averaged


def test_intersection_keeps_the_shared_weights_averaged():
    mask = intersection(MA, MB)
    assert mask["w"].tolist() == [False, True, False, False]
    assert merge_weights(MA, WA, MB, WB, mask)["w"].tolist() == [0.0, 6.0, 0.0, 0.0]


def test_merge_refuses_different_networks():
    with pytest.raises(TicketlabError, match="same network"):
        merge_weights(MA, WA, MB, {"w": WB["w"]}, union(MA, MB))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("combine") / "runs"
    assert main(["imp", "--levels", "2", "--seeds", "0,1", "--iterations", "40", "--eval-every", "40",
                 "--runs-dir", str(runs_dir)]) == 0
    return runs_dir


def test_combine_on_a_tiny_run(tiny_run, capsys):
    capsys.readouterr()
    store = ResultsStore(tiny_run, readonly=True)
    run = store.runs()[0][0]
    rows = {r.name.strip(): r for r in combine_tickets(store, f"{run}:2@0", f"{run}:2@1", finetune=20)}
    a, b = rows[f"parent {run[:6]}:2@0"], rows[f"parent {run[:6]}:2@1"]
    # the parents' accuracies are the stored ones (same weights, same test split)
    assert a.test_acc == pytest.approx(store.level(run, 0, "imp", 2).final_test_acc)
    assert b.test_acc == pytest.approx(store.level(run, 1, "imp", 2).final_test_acc)
    # union density >= each parent's, intersection <= each; ensemble counts both tickets' weights
    assert rows["union"].density >= a.density and rows["intersection"].density <= a.density
    assert rows["ensemble (mean softmax)"].density == pytest.approx(a.density + b.density)
    assert rows["union"].finetuned_acc is not None and 0 <= rows["union"].finetuned_acc <= 1
    assert any(name.startswith(f"nearest IMP level {run[:6]}:") for name in rows)
    assert main(["combine", f"{run}:2@0", f"{run}:2@1", "--runs-dir", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert "union" in out and "ensemble (mean softmax)" in out
    assert main(["combine", f"{run}:2@0", f"{run}:2@0", "--runs-dir", str(tiny_run)]) == 2
    assert "same ticket" in capsys.readouterr().err
