import json

import torch

from ticketlab.export.runtime import CrossoverCache, fast_network
from ticketlab.export.sparse import SparseLinear
from ticketlab.models import build_model


def randomly_pruned(name: str, input_shape: tuple[int, ...], keep: float, seed: int):
    """`name` built for `input_shape` (eval mode), each prunable weight kept with probability `keep`."""
    model = build_model(name, input_shape, 10, seed=0).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param_name in model.prunable_names():
            p = model.get_parameter(param_name)
            p.mul_(torch.rand(p.shape, generator=g) < keep)
    return model


def test_fast_network_matches_and_follows_the_cached_crossover(tmp_path):
    model = randomly_pruned("lenet_300_100", (1, 8, 8), 0.05, seed=0)
    cache = tmp_path / "kernels.json"
    x = torch.randn(8, 1, 8, 8)
    net, notes = fast_network(model, (1, 8, 8), 8, cache=cache)
    torch.testing.assert_close(net(x), model(x), rtol=0, atol=1e-5)
    entries = json.loads(cache.read_text())
    assert len(entries) == len(notes) == 3
    # a cached crossover is used as stored, not measured again: force every layer to CSR, then to dense
    for forced, kind in ((1.0, SparseLinear), (0.0, torch.nn.Linear)):
        cache.write_text(json.dumps({key: forced for key in entries}))
        net, _ = fast_network(model, (1, 8, 8), 8, cache=cache, timed=False)
        linears = [m for m in net if isinstance(m, (SparseLinear, torch.nn.Linear))]
        assert all(type(m) is kind for m in linears)
        torch.testing.assert_close(net(x), model(x), rtol=0, atol=1e-5)
    assert CrossoverCache(cache).entries == {key: 0.0 for key in entries}


def test_a_gather_in_front_of_a_csr_layer_is_folded_into_it(tmp_path):
    from ticketlab.export import Gather
    from ticketlab.export.runtime import FastNetwork

    model = build_model("lenet_300_100", (1, 8, 8), 10, seed=0).eval()
    with torch.no_grad():
        model.fc1.weight[:, :20] = 0  # 20 dead inputs: compaction gathers the other 44
        for name in model.prunable_names():
            p = model.get_parameter(name)
            p.mul_(torch.rand(p.shape, generator=torch.Generator().manual_seed(1)) < 0.3)
    x = torch.randn(5, 1, 8, 8)
    cache = tmp_path / "kernels.json"
    fast_network(model, (1, 8, 8), 5, cache=cache)
    entries = json.loads(cache.read_text())
    for forced, gathers in ((1.0, 0), (0.0, 1)):
        cache.write_text(json.dumps({key: forced for key in entries}))
        net, _ = fast_network(model, (1, 8, 8), 5, cache=cache, timed=False)
        assert isinstance(net, FastNetwork)
        assert sum(isinstance(m, Gather) for m in net) == gathers
        with torch.inference_mode():
            torch.testing.assert_close(net(x), model(x), rtol=0, atol=1e-5)


def test_runtime_of_a_conv_network_matches_it(tmp_path):
    model = randomly_pruned("conv2", (3, 8, 8), 0.1, seed=2)
    x = torch.randn(4, 3, 8, 8)
    cache = tmp_path / "kernels.json"
    fast_network(model, (3, 8, 8), 4, cache=cache)
    entries = json.loads(cache.read_text())
    cache.write_text(json.dumps({key: 1.0 for key in entries}))  # every linear layer on CSR
    net, notes = fast_network(model, (3, 8, 8), 4, cache=cache, timed=False)
    assert all("-> csr" in n for n in notes)
    with torch.inference_mode():
        torch.testing.assert_close(net(x), model(x), rtol=0, atol=1e-5)


def test_timed_runtime_picks_a_whole_network_and_matches_the_model(tmp_path):
    from ticketlab.export.runtime import FastNetwork

    model = randomly_pruned("lenet_300_100", (1, 8, 8), 0.05, seed=3)
    net, notes = fast_network(model, (1, 8, 8), 16, cache=tmp_path / "kernels.json")
    assert isinstance(net, FastNetwork) and len(notes) == 3
    assert all("network timed" in n for n in notes)
    x = torch.randn(16, 1, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(net(x), model(x), rtol=0, atol=1e-5)
