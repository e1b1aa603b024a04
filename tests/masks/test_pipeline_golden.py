"""Masks are bit-identical to those of the code before the one scoring pipeline.

The expected kept counts and hashes below were computed by the code as it was before
`ticketlab.masks.pipeline` existed (IMP's `Replicate._pruned_mask`, `one_shot_mask`,
`level_masks`, each with its own path from scores to a mask). Old runs' stored masks and
run ids must stay valid, so none of these may change.
"""

import hashlib
import types

import pytest
import torch

from tinydata import make_tiny_dataset
from ticketlab.experiments.branches import BRANCHES, MAIN
from ticketlab.experiments.pruning import one_shot_mask
from ticketlab.experiments.spec import ExperimentSpec, ModelSpec, PruningSpec, TrainingSpec
from ticketlab.masks import Mask
from ticketlab.masks.allocation import default_rates
from ticketlab.models import build_model
from ticketlab.supermasks import level_masks

SEED = 3


def digest(mask: Mask) -> tuple[list[int], str]:
    h = hashlib.sha256()
    for name in sorted(mask.keys()):
        h.update(name.encode())
        h.update(mask[name].numpy().tobytes())
    return [int(keep.sum()) for keep in mask._tensors.values()], h.hexdigest()[:16]


def setup(model_name: str, shape=(1, 8, 8)):
    dataset = make_tiny_dataset(shape=shape)
    model = build_model(model_name, dataset.input_shape, dataset.num_classes, seed=SEED)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    g = torch.Generator().manual_seed(5)
    final = {name: value + 0.05 * torch.randn(value.shape, generator=g) for name, value in initial.items()}
    return dataset, model, initial, final


def imp_levels(model_name, levels, shape=(1, 8, 8), **pruning):
    """Masks of IMP levels 1..levels, each scored by IMP's own per-level pruning
    (the IMP line's `mask`) from fixed start and trained weights."""
    dataset, model, initial, final = setup(model_name, shape)
    pruning = PruningSpec(**({"rates": default_rates(model_name)} | pruning))
    spec = ExperimentSpec(model=ModelSpec(model_name), training=TrainingSpec(batch_size=32), pruning=pruning)
    masks = {0: Mask.ones(model)}
    replicate = types.SimpleNamespace(
        spec=spec, model=model, dataset=dataset, seed=SEED,
        mask=lambda branch, level: masks[level],
        trained=lambda branch, level: final,
        initial_weights=lambda: initial,
        rewind_weights=lambda: initial,
    )
    out = []
    for level in range(1, levels + 1):
        masks[level] = BRANCHES.get(MAIN).mask(replicate, level)
        out.append(digest(masks[level]))
    return out


CASES = {
    "layerwise": lambda: imp_levels("lenet_300_100", 3),
    "layerwise_conv2": lambda: imp_levels("conv2", 2, shape=(3, 8, 8)),
    "global_exclude": lambda: imp_levels("lenet_300_100", 3, strategy="global", global_rate=0.3,
                                         exclude=("fc3.weight",)),
    "one_shot_layerwise": lambda: imp_levels("lenet_300_100", 1, one_shot=True, target_density=0.1),
    "one_shot_global": lambda: imp_levels("lenet_300_100", 1, strategy="global", exclude=("fc3.weight",),
                                          one_shot=True, target_density=0.1),
    "snip": lambda: imp_levels("lenet_300_100", 2, criterion="snip"),
    "grad_global_conv2": lambda: imp_levels("conv2", 2, shape=(3, 8, 8), criterion="grad", strategy="global"),
    "random": lambda: imp_levels("lenet_300_100", 2, criterion="random"),
    "one_shot_mask_large_final": lambda: [digest(one_shot_mask(*setup("lenet_300_100")[1:], "large_final", 0.05,
                                                               seed=SEED))],
    "one_shot_mask_snip": lambda: [digest(one_shot_mask(
        setup("lenet_300_100")[1], setup("lenet_300_100")[2], None, "snip", 0.2,
        dataset=make_tiny_dataset(), batch_size=32, seed=SEED))],
    "level_masks": lambda: [digest(m) for m in level_masks(*_level_args("lenet_300_100"), levels=6, seed=SEED)],
    "level_masks_conv6": lambda: [digest(m) for m in level_masks(*_level_args("conv6", (3, 8, 8)),
                                                                 criterion="magnitude_increase", levels=6,
                                                                 seed=SEED)],
}


def _level_args(model_name, shape=(1, 8, 8)):
    dataset, model, initial, final = setup(model_name, shape)
    return model, model_name, initial, final, dataset


# Computed by the code before the pipeline (commit e13dff1), on CPU.
EXPECTED = {
    'global_exclude': [([13526, 20914, 400], 'c9262f2ba87007a9'),
                        ([9559, 14549, 400], '6a73a531f4892b47'),
                        ([6746, 10130, 400], '188563bb52ce8fb6')],
     'grad_global_conv2': [([1728, 36864, 214524, 39900, 821], '854761144e074f1d'),
                           ([1705, 35219, 169428, 27958, 760], '9d873e48706bb79c')],
     'layerwise': [([15360, 24000, 360], '0f5bdbda22168815'),
                   ([12288, 19200, 324], 'bd490437cc1ebe09'),
                   ([9830, 15360, 292], '7612020e4205e275')],
     'layerwise_conv2': [([1555, 33178, 209715, 52429, 922], '4c73740a8bc7f68c'),
                         ([1399, 29860, 167772, 41943, 830], '286d4877a79264e1')],
     'level_masks': [([19200, 30000, 400], 'f597673d49efca26'),
                     ([15360, 24000, 360], 'e59698099b393667'),
                     ([12288, 19200, 324], 'db9d0a05bd14c07f'),
                     ([9830, 15360, 292], 'f0390e5f71312969'),
                     ([7864, 12288, 262], 'f09734a382d0cd40'),
                     ([6291, 9830, 236], '8a29a634b32b6d8c')],
     'level_masks_conv6': [([1728, 36864, 73728, 147456, 294912, 589824, 65536, 65536, 1024], '4457c16fec29614c'),
                           ([1469, 31334, 62669, 125338, 250675, 501350, 52429, 52429, 922], '27ef44442783bac0'),
                           ([1248, 26634, 53268, 106537, 213074, 426148, 41943, 41943, 829], 'ea136f8284c1250a'),
                           ([1061, 22639, 45278, 90556, 181113, 362226, 33554, 33554, 746], '2718a2f295a3f417'),
                           ([902, 19243, 38486, 76973, 153946, 307892, 26844, 26844, 672], '746ae3d77bed33c8'),
                           ([767, 16357, 32714, 65427, 130854, 261708, 21475, 21475, 605], 'c84c04ae9e8bbeea')],
     'one_shot_global': [([1895, 2665, 400], 'b5f9066f087ada6e')],
     'one_shot_layerwise': [([1883, 2943, 134], '9626af47a7b50555')],
     'one_shot_mask_large_final': [([930, 1454, 96], 'f9c3c9c0883eab39')],
     'one_shot_mask_snip': [([3799, 5935, 186], '56d73b6bb08fcaf2')],
     'random': [([15360, 24000, 360], '91c63b40f4f835b2'), ([12288, 19200, 324], '2f797acca8afb73b')],
     'snip': [([15360, 24000, 360], '6261d2e1a63739ff'), ([12288, 19200, 324], '87a091856c4cd61c')]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_masks_are_those_of_the_code_before_the_pipeline(case):
    assert CASES[case]() == EXPECTED[case]


if __name__ == "__main__":
    import pprint
    torch.set_num_threads(1)
    pprint.pprint({case: CASES[case]() for case in sorted(CASES)}, width=110)
