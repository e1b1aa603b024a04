"""Density-aware training (issue #14 item 3): sparse kernels give the dense masked step."""

import json

import pytest
import torch
from torch import nn

from ticketlab import kernels
from ticketlab.crossover import CrossoverCache
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.training import TrainSpec, WeightConstraints, train
from ticketlab.training.sparse_kernels import SparseTraining, parse_sparse_training, sparse_layers

SPEC = TrainSpec(lr=3e-3, batch_size=32, iterations=60, eval_every=20)


def test_forward_and_gradients_on_a_hand_computed_case():
    # W = [[1, 0, 2], [0, 3, 0]] (mask keeps (0,0), (0,2), (1,1)), b = [0.5, -1], x = [1, 2, 3]:
    # y = [1*1 + 2*3 + 0.5, 3*2 - 1] = [7.5, 5]. With L = y0 + 2 y1: dL/dy = [1, 2],
    # dL/dW[i, j] = dL/dy_i x_j at the kept entries = (1*1, 1*3, 2*2) = (1, 3, 4) and
    # dL/dx = dL/dy W = [1, 6, 2].
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 9.0, 2.0], [9.0, 3.0, 9.0]]))  # 9s are pruned
        layer.bias.copy_(torch.tensor([0.5, -1.0]))
    model = nn.Sequential(layer)
    keep = torch.tensor([[True, False, True], [False, True, False]])
    constraints = WeightConstraints(model, Mask({"0.weight": keep}))
    constraints.apply_()
    x = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    with sparse_layers(model, constraints, ["0.weight"]):
        y = model(x)
        torch.testing.assert_close(y, torch.tensor([[7.5, 5.0]]))
        (y[0, 0] + 2 * y[0, 1]).backward()
        assert layer.weight.grad is None  # the dense weight does not train
        torch.testing.assert_close(layer.sparse_values.grad, torch.tensor([1.0, 3.0, 4.0]))
        torch.testing.assert_close(x.grad, torch.tensor([[1.0, 6.0, 2.0]]))
        torch.testing.assert_close(layer.bias.grad, torch.tensor([1.0, 2.0]))
        with torch.no_grad():
            layer.sparse_values.add_(1.0)
    # restored: a plain nn.Linear again, the new values written back, pruned entries zero
    assert "sparse_values" not in dict(layer.named_parameters())
    assert layer.weight.requires_grad and "forward" not in vars(layer)
    torch.testing.assert_close(layer.weight.detach(), torch.tensor([[2.0, 0.0, 3.0], [0.0, 4.0, 0.0]]))


def _masked_run(dataset, sparse, held=None, callbacks=()):
    model = build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=0)
    g = torch.Generator().manual_seed(1)
    mask = Mask({n: torch.rand(model.get_parameter(n).shape, generator=g) < 0.1 for n in model.prunable_names()})
    result = train(model, dataset, SPEC, seed=0, constraints=WeightConstraints(model, mask, held),
                   sparse=sparse, callbacks=callbacks)
    return model, mask, result


def test_sparse_training_equals_the_dense_masked_loop_to_rounding(tiny_dataset):
    dense_model, mask, dense = _masked_run(tiny_dataset, None)
    sparse_model, _, sparse = _masked_run(tiny_dataset, SparseTraining(0.5))
    assert dense.sparse_layers == [] and sparse.sparse_layers == list(mask.keys())
    for (name, a), (_, b) in zip(dense_model.state_dict().items(), sparse_model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    for name, keep in mask.items():
        assert (sparse_model.get_parameter(name)[~keep] == 0).all()  # pruned weights exactly zero
        assert sparse_model.get_parameter(name).requires_grad
    assert [e.test_acc for e in sparse.evaluations] == pytest.approx([e.test_acc for e in dense.evaluations], abs=0.02)


def test_callbacks_see_the_current_dense_weights(tiny_dataset):
    seen = []

    def watch(step, model):
        seen.append(model.fc1.weight.detach().clone())

    model, _, _ = _masked_run(tiny_dataset, SparseTraining(0.5), callbacks=[watch])
    assert len(seen) == SPEC.iterations + 1
    assert not torch.equal(seen[0], seen[1])  # written back after every step
    torch.testing.assert_close(seen[-1], model.fc1.weight.detach(), rtol=0, atol=0)


def test_frozen_weights_and_dense_layers_stay_on_the_dense_path(tiny_dataset):
    model = build_model("lenet_300_100", tiny_dataset.input_shape, tiny_dataset.num_classes, seed=0)
    mask = Mask({n: torch.rand(model.get_parameter(n).shape) < 0.1 for n in model.prunable_names()})
    held = {"fc1.weight": torch.ones_like(model.fc1.weight)}  # frozen at 1, not zero
    constraints = WeightConstraints(model, mask, held)
    assert SparseTraining(0.5).layers(model, constraints, 32) == ["fc2.weight", "fc3.weight"]
    assert SparseTraining(0.05).layers(model, constraints, 32) == []  # all denser than 5%


def test_auto_follows_the_cached_crossover(tiny_dataset, tmp_path):
    model = build_model("lenet_300_100", tiny_dataset.input_shape, tiny_dataset.num_classes, seed=0)
    mask = Mask({n: torch.rand(model.get_parameter(n).shape) < 0.1 for n in model.prunable_names()})
    constraints = WeightConstraints(model, mask)
    cache = tmp_path / "kernels.json"
    shapes = [(m.out_features, m.in_features) for m in (model.fc1, model.fc2, model.fc3)]
    forced = {CrossoverCache.key("training", o, i, 32): c for (o, i), c in zip(shapes, (0.2, 0.0, 0.5))}
    cache.write_text(json.dumps(forced))
    assert SparseTraining(cache=str(cache)).layers(model, constraints, 32) == ["fc1.weight", "fc3.weight"]
    assert json.loads(cache.read_text()) == forced  # read, not measured again


def test_auto_measures_and_caches_a_crossover(tmp_path):
    from ticketlab.training.sparse_kernels import measure_training_crossover

    cache = CrossoverCache(tmp_path / "kernels.json")
    value = cache.crossover("training", 20, 30, 8, measure_training_crossover)
    assert 0.0 <= value <= 1.0
    assert json.loads((tmp_path / "kernels.json").read_text()) == {CrossoverCache.key("training", 20, 30, 8): value}


@pytest.mark.parametrize("value", ["on", "0", "1.5", "-0.1", "nan", ""])
def test_bad_sparse_training_values_are_named(value):
    with pytest.raises(TicketlabError, match="off, auto or a density"):
        parse_sparse_training(value)


def test_sparse_training_values():
    assert parse_sparse_training("off") is None
    assert parse_sparse_training("auto") == SparseTraining()
    assert parse_sparse_training("0.05") == SparseTraining(0.05)


def test_imp_with_sparse_training_keeps_masks_and_records_it(tmp_path):
    from ticketlab.experiments import prepare, run_experiment, spec_from_dict
    from ticketlab.store import ResultsStore

    spec = spec_from_dict({"seeds": [0], "training": {"iterations": 60, "eval_every": 30},
                           "pruning": {"levels": 2}})
    stores = {}
    for mode in ("off", "0.9"):
        experiment, dataset = prepare(spec, tmp_path / mode, sparse_training=mode)
        run_experiment(experiment, dataset=dataset)
        stores[mode] = (ResultsStore(tmp_path / mode), experiment.run_id)
    (dense, run_id), (sparse, sparse_id) = stores["off"], stores["0.9"]
    assert run_id == sparse_id  # not part of the run's identity
    for level in (1, 2):
        a = Mask.load(tmp_path / "off" / run_id / "seed_0" / "imp" / f"level_{level}" / "mask.safetensors")
        b = Mask.load(tmp_path / "0.9" / run_id / "seed_0" / "imp" / f"level_{level}" / "mask.safetensors")
        assert all(torch.equal(a[n], b[n]) for n in a.keys())
        row_a, row_b = dense.level(run_id, 0, "imp", level), sparse.level(run_id, 0, "imp", level)
        assert row_b.early_stop_test_acc == pytest.approx(row_a.early_stop_test_acc, abs=0.02)


@pytest.mark.skipif(not kernels.available(), reason="no native kernels here")
def test_native_kernels_and_torch_kernels_give_the_same_step():
    from ticketlab.training.sparse_kernels import _CsrStructure, _SparseLinearFunction

    g = torch.Generator().manual_seed(3)
    keep = torch.rand(40, 70, generator=g) < 0.1
    structure = _CsrStructure(keep).to("cpu")
    assert structure.native is not None
    values = torch.randn(int(keep.sum()), generator=g)
    bias = torch.randn(40, generator=g)
    x = torch.randn(13, 70, generator=g)
    results = []
    for native in (structure.native, None):
        structure.native = native
        v, b, inp = values.clone().requires_grad_(), bias.clone().requires_grad_(), x.clone().requires_grad_()
        out = _SparseLinearFunction.apply(v, b, inp, structure, False)
        (out * torch.arange(40.0)).sum().backward()
        results.append((out, v.grad, b.grad, inp.grad))
    for a, b in zip(*results):  # the same sums in another order: equal to float32 rounding
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    dense = torch.zeros(40, 70)
    dense[keep] = values
    torch.testing.assert_close(results[0][0], x @ dense.t() + bias)
    torch.testing.assert_close(results[0][2], 13 * torch.arange(40.0))  # dL/db = sum over the batch


def test_the_relu_after_a_sparse_layer_is_folded_in_and_restored():
    from ticketlab.training.sparse_kernels import _following_relu

    shared = nn.ReLU()
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), shared, nn.Linear(4, 4), shared,
                          nn.Linear(4, 3))
    assert _following_relu(model, "0") is model[1]
    assert _following_relu(model, "2") is None  # the same ReLU object also follows layer 4
    assert _following_relu(model, "6") is None  # nothing after it
    keep = {f"{i}.weight": torch.rand(model[i].weight.shape, generator=torch.Generator().manual_seed(i)) < 0.6
            for i in (0, 2, 4, 6)}
    constraints = WeightConstraints(model, Mask(keep))
    constraints.apply_()
    x = torch.randn(9, 6)
    expected = model(x)
    expected.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if n.endswith("bias")}
    model.zero_grad()
    with sparse_layers(model, constraints, list(keep)):
        out = model(x)
        out.sum().backward()
    torch.testing.assert_close(out, expected)
    for name, grad in grads.items():
        torch.testing.assert_close(model.get_parameter(name).grad, grad)
    assert "forward" not in vars(model[1])  # the folded ReLU is itself again
    torch.testing.assert_close(model(x), expected)
