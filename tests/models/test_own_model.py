"""Your own network by import path: prunable weights by module type, seeded init, clear errors,
and an IMP run through spawned worker processes."""

import sys
import textwrap

import pytest
import torch

from ticketlab.cli import main
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model
from ticketlab.store import ResultsStore

MODULE = textwrap.dedent('''
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, input_shape, num_classes):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(input_shape[0], 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
            self.hidden = nn.Linear(4 * input_shape[1] * input_shape[2], 16)
            self.head = nn.Linear(16, num_classes)
            self.temperature = nn.Parameter(torch.rand(1))  # of no known type: torch's own init, seeded

        def forward(self, x):
            x = self.features(x).flatten(1)
            return self.head(torch.relu(self.hidden(x))) * self.temperature

    def build(input_shape, num_classes):
        return Net(input_shape, num_classes)

    def nothing(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.ReLU())

    def not_a_module(input_shape, num_classes):
        return 3
''')


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    (tmp_path / "tl_own_nets.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + ":" + __import__("os").environ.get("PYTHONPATH", ""))
    yield "tl_own_nets"
    sys.modules.pop("tl_own_nets", None)


def test_own_model_prunable_weights_kinds_and_seeded_init(own_module):
    model = build_model(f"{own_module}:build", (1, 8, 8), 10, seed=3)
    assert model.prunable_names() == ["features.0.weight", "hidden.weight", "head.weight"]
    assert [model.layer_kind(n) for n in model.prunable_names()] == ["conv", "fc", "output"]
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    torch.manual_seed(1)
    a = build_model(f"{own_module}:build", (1, 8, 8), 10, seed=3).state_dict()
    torch.manual_seed(2)
    b = build_model(f"{own_module}:build", (1, 8, 8), 10, seed=3).state_dict()
    c = build_model(f"{own_module}:build", (1, 8, 8), 10, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key in ("features.0.weight", "features.1.weight", "hidden.weight", "head.weight", "temperature"):
        assert not torch.equal(a[key], c[key]), key
    assert torch.count_nonzero(a["hidden.bias"]) == 0


@pytest.mark.parametrize("name, message", [
    ("tl_no_such_module:build", "cannot import module"),
    ("{m}:missing", "no callable"),
    ("{m}:nothing", "nothing to prune"),
    ("{m}:not_a_module", "not a torch.nn.Module"),
])
def test_own_model_errors_are_clear(own_module, name, message):
    with pytest.raises(TicketlabError, match=message):
        build_model(name.format(m=own_module), (1, 8, 8), 10, seed=0)


def test_imp_with_an_own_model_in_worker_processes(own_module, tmp_path, capsys):
    code = main(["imp", "--model", f"{own_module}:build", "--levels", "1", "--iterations", "30",
                 "--eval-every", "15", "--seeds", "0,1", "--jobs", "2", "--runs-dir", str(tmp_path / "runs")])
    assert code == 0, capsys.readouterr()
    store = ResultsStore(tmp_path / "runs")
    (run_id, _, _), = store.runs()
    rows = store.levels(run_id)
    assert {(r.seed, r.level) for r in rows} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(r.density < 1 for r in rows if r.level == 1)
