"""Devices and precision: cpu unchanged, bf16 autocast, deferred loss reads, CUDA when present."""

import pytest
import torch

from tinydata import make_tiny_dataset
from ticketlab.errors import DivergedError, TicketlabError
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.training import TrainSpec, WeightConstraints, train
from ticketlab.training import loop
from ticketlab.training.device import resolve_device

SPEC = dict(optimizer="sgd", lr=0.05, iterations=12, eval_every=6, batch_size=32)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def run(name="lenet_300_100", shape=(1, 8, 8), mask=False, **kwargs):
    spec = TrainSpec(**(SPEC | kwargs.pop("spec", {})))
    data = make_tiny_dataset(shape=shape)
    model = build_model(name, data.input_shape, data.num_classes, seed=0)
    constraints = None
    if mask:
        g = torch.Generator().manual_seed(0)
        constraints = WeightConstraints(model, Mask({n: torch.rand(k.shape, generator=g) < 0.5
                                                     for n, k in Mask.ones(model).items()}))
    result = train(model, data, spec, seed=0, constraints=constraints, **kwargs)
    return model, result


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(TicketlabError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(TicketlabError, match="no CUDA"):
            resolve_device("cuda:0")


def test_cpu_device_changes_nothing():
    a, ra = run(mask=True)
    b, rb = run(mask=True, device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert str([e.metrics() for e in ra.evaluations]) == str([e.metrics() for e in rb.evaluations])  # NaN at step 0


def test_bf16_autocast_trains_a_conv_net_in_fp32_weights():
    model, result = run("resnet8_4", (3, 8, 8), mask=True, spec={"precision": "bf16"})
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.get_parameter("conv.weight").is_contiguous()  # back to the caller's layout
    assert result.final.train_loss == result.final.train_loss  # finite, not NaN
    fp32, _ = run("resnet8_4", (3, 8, 8), mask=True)
    assert not torch.equal(model.get_parameter("conv.weight"), fp32.get_parameter("conv.weight"))


def test_deferred_loss_reads_give_the_same_weights_and_still_catch_divergence(monkeypatch):
    synced, r1 = run(mask=True)
    monkeypatch.setattr(loop, "SYNC_EVERY_STEP", ())
    deferred, r2 = run(mask=True)
    assert all(torch.equal(x, y) for x, y in zip(synced.state_dict().values(), deferred.state_dict().values()))
    assert [e.train_loss for e in r2.evaluations[1:]] == pytest.approx([e.train_loss for e in r1.evaluations[1:]])
    with pytest.raises(DivergedError, match="between iterations 1 and 6"):
        run(spec={"lr": 1e6, "optimizer": "adam"})


@cuda
def test_cuda_training_matches_cpu_closely_and_moves_data_once():
    cpu, r_cpu = run("resnet8_4", (3, 8, 8), mask=True)
    gpu, r_gpu = run("resnet8_4", (3, 8, 8), mask=True, device="cuda")
    assert gpu.get_parameter("conv.weight").is_cuda
    assert r_gpu.final.test_acc == pytest.approx(r_cpu.final.test_acc, abs=0.1)
    again, _ = run("resnet8_4", (3, 8, 8), mask=True, device="cuda")
    torch.testing.assert_close(gpu.state_dict(), again.state_dict())


@cuda
def test_cuda_bf16_runs():
    model, result = run("resnet8_4", (3, 8, 8), device="cuda", spec={"precision": "bf16"})
    assert result.final.test_acc == result.final.test_acc
