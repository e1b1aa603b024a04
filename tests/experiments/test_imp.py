import torch
import pytest

from tinydata import make_tiny_dataset
from ticketlab.errors import TicketlabError
from ticketlab.experiments import Replicate, prepare, run_experiment, spec_from_dict
from ticketlab.masks import Mask
from ticketlab.masks.allocation import kept_after
from ticketlab.store import ResultsStore, load_tensors

BASE = {"training": {"iterations": 40, "eval_every": 10, "batch_size": 32}, "pruning": {"levels": 3}}


def run(tmp_path, data=BASE, **kwargs):
    dataset = make_tiny_dataset()
    experiment, _ = prepare(spec_from_dict(data), tmp_path, dataset=dataset)
    run_experiment(experiment, dataset=dataset, **kwargs)
    return experiment, dataset, ResultsStore(tmp_path)


def masks_of(tmp_path, run_id, branch="imp", seed=0, levels=range(4)):
    return [Mask(load_tensors(tmp_path / run_id / f"seed_{seed}" / branch / f"level_{n}" / "mask.safetensors")) for n in levels]


def test_imp_prunes_a_fraction_of_each_layers_remaining_weights(tmp_path):
    experiment, _, store = run(tmp_path)
    masks = masks_of(tmp_path, experiment.run_id)
    rates = {"fc1.weight": 0.2, "fc2.weight": 0.2, "fc3.weight": 0.1}
    for before, after in zip(masks, masks[1:]):
        assert after.is_inside(before)
        for name, keep in after.items():
            assert int(keep.sum()) == kept_after(int(before[name].sum()), rates[name])
    rows = [r for r in store.levels(experiment.run_id) if r.branch == "imp"]
    assert [r.level for r in rows] == [0, 1, 2, 3]
    assert [r.density for r in rows] == [m.density for m in masks]


def test_each_level_keeps_the_largest_trained_weights_and_rewinds_to_init(tmp_path):
    experiment, dataset, store = run(tmp_path)
    root = tmp_path / experiment.run_id / "seed_0"
    init = load_tensors(root / "init.safetensors")
    final0 = load_tensors(root / "imp" / "level_0" / "final.safetensors")
    mask1 = masks_of(tmp_path, experiment.run_id, levels=[1])[0]
    # the same choice made by hand: top |w_f| per layer (no ties among trained floats)
    for name, keep in mask1.items():
        count = int(keep.sum())
        threshold = final0[name].abs().flatten().sort(descending=True).values[count - 1]
        assert torch.equal(keep, final0[name].abs() >= threshold)
    replicate = Replicate(experiment.spec, experiment.run_id, 0, store, dataset)
    start = replicate.start_weights("imp", 1)
    assert all(torch.equal(start[k], init[k]) for k in init)
    final1 = load_tensors(root / "imp" / "level_1" / "final.safetensors")
    for name, keep in mask1.items():
        assert torch.count_nonzero(final1[name][~keep]) == 0
    assert torch.count_nonzero(final1["fc1.bias"]) > 0 and not torch.equal(final1["fc1.bias"], init["fc1.bias"])  # biases train, never masked
    assert "fc1.bias" not in mask1


def test_rerunning_a_finished_run_recomputes_nothing(tmp_path):
    experiment, dataset, store = run(tmp_path)
    before = store.levels(experiment.run_id)
    reported = []
    run_experiment(experiment, dataset=dataset, report=reported.append)
    assert reported == []
    assert store.levels(experiment.run_id) == before


def test_altered_files_are_detected_and_recomputed_to_the_same_result(tmp_path):
    experiment, dataset, store = run(tmp_path)
    before = {(r.level, r.early_stop_test_acc, r.final_test_loss) for r in store.levels(experiment.run_id)}
    mask_path = tmp_path / experiment.run_id / "seed_0" / "imp" / "level_2" / "mask.safetensors"
    final_path = tmp_path / experiment.run_id / "seed_0" / "imp" / "level_1" / "final.safetensors"
    mask_bytes = mask_path.read_bytes()
    mask_path.write_bytes(mask_bytes[:-10])  # truncated
    final_path.write_bytes(final_path.read_bytes()[:-4] + b"\x00\x00\x00\x01")  # altered
    reported = []
    with pytest.warns(UserWarning, match="checksum"):
        run_experiment(experiment, dataset=dataset, report=reported.append)
    assert sorted(r.level for r in reported) == [1, 2]
    assert mask_path.read_bytes() == mask_bytes
    after = {(r.level, r.early_stop_test_acc, r.final_test_loss) for r in store.levels(experiment.run_id)}
    assert after == before


def test_late_rewinding_restarts_from_the_dense_runs_iteration_k(tmp_path):
    data = BASE | {"rewind": {"iteration": 8}}
    experiment, dataset, store = run(tmp_path, data)
    root = tmp_path / experiment.run_id / "seed_0"
    rewind = load_tensors(root / "rewind.safetensors")
    init = load_tensors(root / "init.safetensors")
    assert not torch.equal(rewind["fc1.weight"], init["fc1.weight"])
    replicate = Replicate(experiment.spec, experiment.run_id, 0, store, dataset)
    assert all(torch.equal(replicate.start_weights("imp", 2)[k], rewind[k]) for k in rewind)
    steps = [s for s, name, _ in store.metrics(experiment.run_id, 0, "imp", 1) if name == "test_acc"]
    assert steps == [8, 10, 20, 30, 40]


def test_baselines_share_the_tickets_masks_or_their_layer_densities(tmp_path):
    data = BASE | {"baselines": ["reinit", "random_mask"]}
    experiment, _, store = run(tmp_path, data)
    tickets = masks_of(tmp_path, experiment.run_id, levels=[1, 2, 3])
    reinit = masks_of(tmp_path, experiment.run_id, "reinit", levels=[1, 2, 3])
    random = masks_of(tmp_path, experiment.run_id, "random_mask", levels=[1, 2, 3])
    assert tickets == reinit
    for ticket, other in zip(tickets, random):
        assert [l.kept for l in ticket.layers()] == [l.kept for l in other.layers()]
        assert ticket != other
    branches = {(r.branch, r.level) for r in store.levels(experiment.run_id)}
    assert {("reinit", 3), ("random_mask", 1)} <= branches


def test_global_and_one_shot_pruning(tmp_path):
    data = {"training": BASE["training"], "pruning": {"strategy": "global", "one_shot": True,
                                                      "target_density": 0.1, "exclude": ["fc3.weight"]}}
    experiment, _, _ = run(tmp_path, data)
    mask = masks_of(tmp_path, experiment.run_id, levels=[1])[0]
    assert mask["fc3.weight"].all()
    assert mask.density == pytest.approx(0.1, abs=0.001)


def test_a_second_process_on_the_same_run_is_refused(tmp_path):
    import filelock

    dataset = make_tiny_dataset()
    experiment, _ = prepare(spec_from_dict(BASE), tmp_path, dataset=dataset)
    (tmp_path / experiment.run_id).mkdir(parents=True)
    with filelock.FileLock(tmp_path / experiment.run_id / ".lock"):
        with pytest.raises(TicketlabError, match="another process"):
            run_experiment(experiment, dataset=dataset)
    assert ResultsStore(tmp_path).run_spec(experiment.run_id) is None  # the refused command recorded nothing
    assert not (tmp_path / experiment.run_id / "spec.toml").exists()


def _rows_without(rows, *fields):
    return [{k: v for k, v in vars(r).items() if k not in fields} for r in rows]


def test_runs_differing_only_in_pruning_share_the_dense_level(tmp_path):
    short = {"training": BASE["training"], "pruning": {"levels": 1}, "rewind": {"iteration": 10}}
    donor, dataset, store = run(tmp_path, short)
    variant_spec = short | {"pruning": {"levels": 1, "criterion": "movement"}, "ticket": {"mask0": "freeze_init"}}
    reported = []
    variant, _, _ = run(tmp_path, variant_spec, report=reported.append)
    assert [(r.level, r.seconds) for r in reported] == [(0, 0.0), (1, reported[1].seconds)]  # level 0 not trained
    dense = [r for r in store.levels(variant.run_id) if r.level == 0]
    assert _rows_without(dense, "run_id", "seconds", "finished") == _rows_without(
        [r for r in store.levels(donor.run_id) if r.level == 0], "run_id", "seconds", "finished")
    assert store.metrics(variant.run_id, 0, "imp", 0) == store.metrics(donor.run_id, 0, "imp", 0)
    for name in ("init", "rewind", "imp/level_0/final"):
        ours = load_tensors(tmp_path / variant.run_id / "seed_0" / f"{name}.safetensors")
        theirs = load_tensors(tmp_path / donor.run_id / "seed_0" / f"{name}.safetensors")
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)

    # the adopted level gives the same run as training it: the same spec in a store of its own
    alone, _, alone_store = run(tmp_path / "alone", variant_spec)
    assert alone.run_id == variant.run_id
    assert _rows_without(alone_store.levels(alone.run_id), "seconds", "finished") == _rows_without(
        store.levels(variant.run_id), "seconds", "finished")


def test_a_run_with_another_schedule_does_not_share_the_dense_level(tmp_path):
    run(tmp_path, {"training": BASE["training"], "pruning": {"levels": 1}})
    reported = []
    other = {"training": BASE["training"] | {"lr": 0.01}, "pruning": {"levels": 1, "criterion": "movement"}}
    run(tmp_path, other, report=reported.append)
    assert reported[0].level == 0 and reported[0].seconds > 0


def test_imp_trains_on_the_named_device_and_refuses_one_that_is_not_here(tmp_path, capsys):
    from ticketlab.cli import main

    argv = ["imp", "--levels", "1", "--iterations", "20", "--eval-every", "10", "--runs-dir", str(tmp_path)]
    assert main(argv + ["--device", "cpu"]) == 0
    assert "| imp | 1 |" in capsys.readouterr().out
    assert main(argv + ["--device", "tpu"]) == 2
    assert "unknown device 'tpu'; valid: auto, cpu, cuda, cuda:N, mps" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(argv + ["--device", "cuda"]) == 2
        assert "sees no CUDA GPU" in capsys.readouterr().err
        auto = ["--runs-dir", str(tmp_path / "auto"), "--device", "auto"]  # resolved to cpu, not passed on as "auto"
        assert main(argv + auto) == 0 and "| imp | 1 |" in capsys.readouterr().out
