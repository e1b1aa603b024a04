"""Batch norm through IMP: rewind points carry BN parameters and running statistics, rewinding
restores them, the reinit baseline re-draws them, masks never touch them."""

import torch

from tinydata import make_tiny_dataset
from ticketlab.experiments import Replicate, prepare, run_experiment, spec_from_dict
from ticketlab.masks import Mask
from ticketlab.store import ResultsStore, load_tensors

SPEC = {
    "model": {"name": "resnet8_4"},
    "training": {"optimizer": "sgd", "lr": 0.05, "iterations": 20, "eval_every": 10, "batch_size": 32},
    "pruning": {"levels": 2},
    "rewind": {"iteration": 5},
    "baselines": ["reinit"],
}
BN = "block1_0.bn1"


def test_batchnorm_state_through_two_imp_levels(tmp_path):
    dataset = make_tiny_dataset(shape=(3, 8, 8))
    experiment, _ = prepare(spec_from_dict(SPEC), tmp_path, dataset=dataset)
    run_experiment(experiment, dataset=dataset)
    store = ResultsStore(tmp_path)
    root = tmp_path / experiment.run_id / "seed_0"
    init = load_tensors(root / "init.safetensors")
    rewind = load_tensors(root / "rewind.safetensors")
    # the rewind point holds BN state after 5 training steps
    assert int(rewind[f"{BN}.num_batches_tracked"]) == 5
    assert torch.count_nonzero(rewind[f"{BN}.running_mean"]) > 0
    assert not torch.equal(rewind[f"{BN}.weight"], init[f"{BN}.weight"])

    for level in (1, 2):
        mask = Mask(load_tensors(root / "imp" / f"level_{level}" / "mask.safetensors"))
        assert not any("bn" in name or name.endswith("bias") for name in mask)
        assert mask.density < 1
    replicate = Replicate(experiment.spec, experiment.run_id, 0, store, dataset)
    start = replicate.start_weights("imp", 2)
    for key in rewind:  # rewinding restores every BN tensor (and the kept weights)
        if "bn" in key:
            assert torch.equal(start[key], rewind[key]), key
    final = load_tensors(root / "imp" / "level_2" / "final.safetensors")
    assert int(final[f"{BN}.num_batches_tracked"]) == 20  # trained iterations 6..20 from the rewind point
    assert not torch.equal(final[f"{BN}.weight"], rewind[f"{BN}.weight"])  # BN trains, unmasked

    reinit = replicate.start_weights("reinit", 2)
    assert not torch.equal(reinit[f"{BN}.weight"], rewind[f"{BN}.weight"])
    assert not torch.equal(reinit[f"{BN}.weight"], init[f"{BN}.weight"])
    assert ((reinit[f"{BN}.weight"] >= 0) & (reinit[f"{BN}.weight"] <= 1)).all()
    assert torch.count_nonzero(reinit[f"{BN}.running_mean"]) == 0
    assert int(reinit[f"{BN}.num_batches_tracked"]) == 0
    again = Replicate(experiment.spec, experiment.run_id, 0, store, dataset).start_weights("reinit", 2)
    assert all(torch.equal(reinit[k], again[k]) for k in reinit)  # seeded
    rows = {(r.branch, r.level) for r in store.levels(experiment.run_id)}
    assert rows == {("imp", 0), ("imp", 1), ("imp", 2), ("reinit", 1), ("reinit", 2)}
