"""Masks from a trained network on the untrained initial weights, over the paper's prune levels."""

import torch

from ticketlab.masks import CRITERIA
from ticketlab.models import INIT_STDS, build_model
from ticketlab.supermasks import best_point, init_mask_curve, level_masks
from ticketlab.training import evaluate


def initial_and_final(dataset):
    model = build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=0)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    g = torch.Generator().manual_seed(5)
    final = {name: value + 0.05 * torch.randn(value.shape, generator=g) for name, value in initial.items()}
    return model, initial, final


def test_levels_keep_the_papers_per_layer_fractions_of_the_best_scores(tiny_dataset):
    model, initial, final = initial_and_final(tiny_dataset)
    masks = level_masks(model, "lenet_300_100", initial, final, tiny_dataset, levels=4)
    score = CRITERIA.get("large_final_same_sign").score
    for level, mask in enumerate(masks):
        for name, keep in mask.items():
            base = 0.9 if name == "fc3.weight" else 0.8  # hidden layers 0.8^p, output 0.9^p
            size = keep.numel()
            assert int(keep.sum()) == size - round((1 - base**level) * size)
            scores = score(initial[name], final[name], torch.ones_like(keep), None)
            if 0 < keep.sum() < size:
                assert scores[keep].min() >= scores[~keep].max()
    assert masks[0].density == 1.0


def test_curve_evaluates_the_masked_untrained_network(tiny_dataset):
    model, initial, final = initial_and_final(tiny_dataset)
    masks = level_masks(model, "lenet_300_100", initial, final, tiny_dataset, levels=3)
    plain = init_mask_curve(model, initial, masks, tiny_dataset, "init")
    signed = init_mask_curve(model, initial, masks, tiny_dataset, "signed_constant")
    std = INIT_STDS.get(model.init_scheme)
    for kind, curve in (("init", plain), ("signed_constant", signed)):
        for point, mask in zip(curve, masks):
            reference = build_model("lenet_300_100", tiny_dataset.input_shape, tiny_dataset.num_classes, seed=0)
            with torch.no_grad():
                for name, keep in mask.items():
                    w = initial[name] if kind == "init" else torch.sign(initial[name]) * std(keep.shape)
                    reference.get_parameter(name).copy_(w * keep)
            assert point.test_acc == evaluate(reference, tiny_dataset.test.x, tiny_dataset.test.y)[1]
            assert point.density == mask.density
    assert best_point(plain).test_acc == max(point.test_acc for point in plain)


def test_init_mask_study_reads_weight_files_and_scores_with_them(tiny_dataset, tmp_path):
    from ticketlab.store import save_tensors
    from ticketlab.supermasks import init_mask_study

    model, initial, final = initial_and_final(tiny_dataset)
    save_tensors(tmp_path / "final.safetensors", final)
    study = init_mask_study("lenet_300_100", tiny_dataset, levels=3, trained=tmp_path / "final.safetensors")
    assert study.trained_acc is None and study.masks == level_masks(model, "lenet_300_100", initial, final,
                                                                    tiny_dataset, levels=3)
    assert set(study.curves) == {"init", "signed_constant"}
    assert study.best("init") == best_point(study.curves["init"])


def test_level_masks_of_gradient_criteria_score_on_the_batch_of_level_1(tiny_dataset):
    import copy

    from ticketlab.masks import Mask
    from ticketlab.masks.allocation import Level
    from ticketlab.masks.pipeline import GradientBatch, prune

    model, initial, final = initial_and_final(tiny_dataset)
    masks = level_masks(model, "lenet_300_100", initial, final, tiny_dataset, criterion="snip", levels=3, seed=2)
    rates = {"fc1.weight": 0.2, "fc2.weight": 0.2, "fc3.weight": 0.1}

    def level_2_on(level):
        batch = GradientBatch(copy.deepcopy(model), tiny_dataset, 60, 2, level)
        return prune("snip", initial, None, Mask.ones(model), Level(rates, 2), torch.Generator().manual_seed(2),
                     gradients=batch)

    assert masks[2] == level_2_on(1) and masks[2] != level_2_on(2)
