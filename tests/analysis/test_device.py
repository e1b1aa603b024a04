"""`--device` for the Frankenmodel and for combining tickets: the CPU (named, or picked by
`auto`) gives the same table as without it, a device that is not here is a clear error, and on
a GPU both run with tiny budgets."""

import math

import pytest

from devicecheck import HERE, assert_device_refused, cuda, results_only
from ticketlab.analysis.combine import combine_tickets
from ticketlab.analysis.franken import frankenmodel
from ticketlab.cli import main
from ticketlab.store import ResultsStore


def franken(data, device):
    return frankenmodel(data, k=2, levels=1, iterations=20, b_iterations=20, seed=0, device=device)


def same_rows(a, b) -> bool:
    """Rows equal field by field (the joint row's NaN logit change counts as equal)."""
    return [str(row) for row in a] == [str(row) for row in b]


@pytest.fixture(scope="module")
def two_tickets(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("device") / "runs"
    assert main(["imp", "--levels", "1", "--seeds", "0,1", "--iterations", "20", "--eval-every", "20",
                 "--runs-dir", str(runs_dir)]) == 0
    store = ResultsStore(runs_dir, readonly=True)
    run = store.runs()[0][0]
    return store, f"{run}:1@0", f"{run}:1@1"


def test_franken_on_the_cpu_device_gives_the_same_table(tiny_dataset):
    plain = franken(tiny_dataset, None)
    for device in HERE:
        assert same_rows(franken(tiny_dataset, device), plain)


def test_combine_on_the_cpu_device_gives_the_same_table(two_tickets):
    store, a, b = two_tickets
    plain = combine_tickets(store, a, b, finetune=10)
    assert any(row.finetuned_acc is not None for row in plain)
    for device in HERE:
        assert combine_tickets(store, a, b, finetune=10, device=device) == plain


def test_the_clis_take_the_device_and_refuse_one_that_is_not_here(two_tickets, capsys):
    store, a, b = two_tickets
    combine = ["combine", a, b, "--finetune", "10", "--runs-dir", str(store.runs_dir)]
    assert main(combine) == 0
    plain = results_only(capsys.readouterr().out)
    for device in HERE:
        assert main(combine + ["--device", device]) == 0 and results_only(capsys.readouterr().out) == plain
    franken_argv = ["franken", "--levels", "1", "--iterations", "10", "--b-iterations", "10"]
    for argv in (combine, franken_argv):
        assert_device_refused(argv, capsys)


@cuda
def test_franken_runs_on_cuda_and_keeps_its_promises(tiny_dataset):
    rows = {row.model.split(" (")[0]: row for row in franken(tiny_dataset, "cuda")}
    assert rows["franken isolated"].a_logit_change < 1e-3  # A logits unchanged, up to rounding
    assert math.isnan(rows["joint"].a_logit_change)
    assert all(0 <= row.all_acc <= 1 for row in rows.values())


@cuda
def test_combine_fine_tunes_on_cuda(two_tickets):
    store, a, b = two_tickets
    rows = {row.name: row for row in combine_tickets(store, a, b, finetune=10, device="cuda")}
    plain = {row.name: row for row in combine_tickets(store, a, b, finetune=10)}
    assert rows.keys() == plain.keys()
    for name, row in rows.items():
        assert row.density == plain[name].density  # masks are exact: the same densities
        assert (row.finetuned_acc is None) == (plain[name].finetuned_acc is None)
