import subprocess
import sys

import filelock
import pytest
import torch
from torch import nn

from ticketlab.cli import main
from ticketlab.cli.export import FORMAT_NAMES
from ticketlab.errors import TicketlabError
from ticketlab.export import FORMATS, compact, export, load_exported, load_ticket, sparsify, to_torch_prune
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.store import ResultsStore
from ticketlab.training.evaluate import evaluate

SPARSEST = 2


def _needs(fmt):
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize("level", [0, SPARSEST])
def test_round_trip_gives_the_stored_test_accuracy(run, tmp_path, fmt, level):
    _needs(fmt)
    runs_dir, run_id, dataset = run
    row = ResultsStore(runs_dir, readonly=True).level(run_id, 0, "imp", level)
    out = tmp_path / f"ticket.{fmt}"
    report = export(runs_dir, run_id[:6], level, fmt, out)
    assert report.max_abs_diff <= 1e-5
    loaded = load_exported(out)
    _, accuracy = evaluate(loaded.module, dataset.test.x, dataset.test.y)
    assert accuracy == row.final_test_acc
    meta = loaded.metadata
    assert (meta["run_id"], meta["level"], meta["format"]) == (run_id, str(level), fmt)
    assert float(meta["density"]) == pytest.approx(row.density, abs=1e-6)
    assert len(meta["sha256"]) == 64


def test_masked_formats_keep_the_mask_and_the_compact_network_is_smaller(run, tmp_path):
    runs_dir, run_id, _ = run
    ticket = load_ticket(runs_dir, run_id, SPARSEST)
    for fmt in ("masked", "torch_prune"):
        export(runs_dir, run_id, SPARSEST, fmt, tmp_path / fmt)
        assert load_exported(tmp_path / fmt).mask == ticket.mask
    small = compact(ticket.model, ticket.dataset.input_shape)
    linears = [m for m in small if isinstance(m, nn.Linear)]
    assert sum(m.weight.numel() for m in linears) < ticket.mask.total  # dead units are gone
    assert linears[-1].out_features == 10


def test_a_sparse_file_loads_as_the_runtime_network(run, tmp_path):
    from ticketlab.export.runtime import FastNetwork

    runs_dir, run_id, dataset = run
    export(runs_dir, run_id, SPARSEST, "sparse", tmp_path / "t")
    loaded = load_exported(tmp_path / "t").module
    assert isinstance(loaded, FastNetwork)
    ticket = load_ticket(runs_dir, run_id, SPARSEST)
    x = dataset.test.x[:70]  # two blocks of 32 and a tail of the native chain
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ticket.model.eval()(x), rtol=0, atol=1e-5)


def test_torch_prune_layout_both_ways():
    model = build_model("lenet_300_100", (1, 8, 8), 10, seed=0)
    g = torch.Generator().manual_seed(0)
    mask = Mask({n: torch.rand(model.get_parameter(n).shape, generator=g) < 0.3 for n in model.prunable_names()})
    pruned = to_torch_prune(model, mask)
    assert "fc1.weight_orig" in dict(pruned.named_parameters())
    assert Mask.from_torch_prune(pruned) == mask
    with pytest.raises(TicketlabError, match="torch.nn.utils.prune"):
        Mask.from_torch_prune(build_model("lenet_300_100", (1, 8, 8), 10, seed=0))


def _mlp(weights, biases):
    layers = [nn.Flatten()]
    for i, (w, b) in enumerate(zip(weights, biases)):
        linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(w)
            linear.bias.copy_(b)
        layers += [linear, nn.ReLU()] if i + 1 < len(weights) else [linear]
    return nn.Sequential(*layers).eval()


def test_compact_folds_units_without_inputs_into_the_next_bias():
    # 4 inputs -> 3 hidden -> 2 outputs. Hidden 0 has no inputs and bias 2 (outputs relu(2) = 2),
    # hidden 1 has no outgoing weights, input 3 has no outgoing weights.
    w1 = torch.tensor([[0.0, 0, 0, 0], [1, 2, 0, 0], [0.5, 0, -1, 0]])
    b1 = torch.tensor([2.0, 0.1, -0.2])
    w2 = torch.tensor([[3.0, 0, 1], [-1, 0, 2]])
    b2 = torch.tensor([0.5, -0.5])
    model = _mlp([w1, w2], [b1, b2])
    small = compact(model, (1, 2, 2))
    x = torch.randn(16, 1, 2, 2)
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-6)
    linears = [m for m in small if isinstance(m, nn.Linear)]
    assert linears[0].weight.shape == (1, 2)  # only hidden 2 is left, reading inputs 0 and 2
    assert linears[1].bias.tolist() == pytest.approx([0.5 + 3 * 2, -0.5 - 1 * 2])
    # without the fold the outputs would differ by (6, -2): the test can fail
    assert not torch.allclose(small(x) - torch.tensor([6.0, -2.0]), model(x))


def test_compact_and_sparse_conv2_match_the_masked_network():
    torch.manual_seed(0)
    model = build_model("conv2", (1, 8, 8), 10, seed=0).eval()
    with torch.no_grad():
        for name in model.prunable_names():
            p = model.get_parameter(name)
            p.mul_(torch.rand(p.shape) < (0.6 if name == "conv1.weight" else 0.3))  # no chance-empty units
        model.conv1.weight[3] = 0  # no inputs, positive bias: constant channel read by conv2 (kept)
        model.conv1.bias[3] = 0.5
        model.conv1.weight[4] = 0  # identically zero channel: removed
        model.conv1.bias[4] = -1.0
        model.conv2.weight[:, 5] = 0  # conv1 channel 5 is never read: removed
        model.conv2.weight[7] = 0  # constant channel of the last conv: folded into fc
        model.conv2.bias[7] = 0.3
        model.fc1.weight.view(256, 64, 16)[:, 9] = 0  # conv2 channel 9 is never read: removed
    small = compact(model, (1, 8, 8))
    x = torch.randn(32, 1, 8, 8)
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(sparsify(small)(x), model(x), rtol=0, atol=1e-5)
    assert small[0].out_channels == 62 and small[2].out_channels == 62


def test_cli_format_choices_are_the_registry():
    assert sorted(FORMAT_NAMES) == FORMATS.names()


def _nothing_written(folder):
    assert list(folder.iterdir()) == []


def test_a_level_that_does_not_exist_is_refused(run, tmp_path):
    runs_dir, run_id, _ = run
    with pytest.raises(TicketlabError, match="no finished imp level 7"):
        export(runs_dir, run_id, 7, "compact", tmp_path / "t")
    _nothing_written(tmp_path)


def test_an_unknown_format_is_refused(run, tmp_path, capsys):
    runs_dir, run_id, _ = run
    with pytest.raises(TicketlabError, match="unknown export format 'pickle'"):
        export(runs_dir, run_id, 1, "pickle", tmp_path / "t")
    with pytest.raises(SystemExit):
        main(["export", run_id, "--level", "1", "--format", "pickle", "--out", str(tmp_path / "t"),
              "--runs-dir", str(runs_dir)])
    assert "invalid choice: 'pickle'" in capsys.readouterr().err
    _nothing_written(tmp_path)


def test_a_running_run_is_refused(run, tmp_path):
    runs_dir, run_id, _ = run
    holder = subprocess.Popen([sys.executable, "-c", "import filelock, sys, time; "
                              f"l = filelock.FileLock({str(runs_dir / run_id / '.lock')!r}); l.acquire(); "
                              "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TicketlabError, match="being run by another process"):
            export(runs_dir, run_id, 1, "compact", tmp_path / "t")
    finally:
        holder.kill()
        holder.wait()
    _nothing_written(tmp_path)
    with filelock.FileLock(runs_dir / run_id / ".lock", timeout=5):  # released: the lock works as the engine's
        pass


def test_a_corrupt_checkpoint_is_refused(run, tmp_path):
    runs_dir, run_id, _ = run
    path = runs_dir / run_id / "seed_0" / "imp" / "level_1" / "final.safetensors"
    original = path.read_bytes()
    data = bytearray(original)
    data[-5] ^= 0x01  # a flipped bit in a weight: still a readable file
    try:
        path.write_bytes(bytes(data))
        code = main(["export", run_id, "--level", "1", "--format", "masked", "--out", str(tmp_path / "t"),
                     "--runs-dir", str(runs_dir)])
        assert code == 2
        with pytest.raises(TicketlabError, match="does not match the checksum"):
            export(runs_dir, run_id, 1, "masked", tmp_path / "t")
    finally:
        path.write_bytes(original)
    _nothing_written(tmp_path)


@pytest.mark.parametrize("fmt", ["compact", "onnx"])
def test_a_damaged_export_is_refused_on_load(run, tmp_path, fmt):
    _needs(fmt)
    runs_dir, run_id, _ = run
    out = tmp_path / "t"
    export(runs_dir, run_id, 1, fmt, out)
    data = bytearray(out.read_bytes())
    data[-20] ^= 0x01
    out.write_bytes(bytes(data))
    with pytest.raises(TicketlabError, match="damaged|not a readable"):
        load_exported(out)
