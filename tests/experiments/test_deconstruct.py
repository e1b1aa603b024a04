"""The deconstruction studies end to end on tiny data: variants as IMP runs, shared and
reused runs, mask-1/mask-0 actions inside real levels, one-shot pruning, bad input."""

import pytest
import torch

from tinydata import make_tiny_dataset
from ticketlab.cli import main
from ticketlab.errors import TicketlabError
from ticketlab.experiments import ExperimentSpec, Replicate, prepare, run_experiment, spec_from_dict
from ticketlab.experiments.deconstruct import plan, run_sweep, study_choices, study_table
from ticketlab.experiments.pruning import one_shot_mask
from ticketlab.masks import Mask
from ticketlab.models import build_model, glorot_std
from ticketlab.plots.deconstruct import plot_study, zoom_limits
from ticketlab.store import ResultsStore, load_tensors

BASE = {"training": {"iterations": 30, "eval_every": 10, "batch_size": 32}, "pruning": {"levels": 2}}
NAMES = {"criteria": ["large_final", "snip"], "mask1": ["rewind", "constant_same_sign"],
         "mask0": ["zero", "freeze_init"]}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny layers train fastest on one thread, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def swept(one_thread, tmp_path_factory):
    """One tiny sweep of the three studies, run once for the tests that read it."""
    runs_dir = tmp_path_factory.mktemp("runs")
    dataset = make_tiny_dataset()
    sweep, _ = plan(spec_from_dict(BASE | {"baselines": ["reinit"]}), NAMES, runs_dir, dataset=dataset)
    reported = []
    run_sweep(sweep, dataset=dataset, report=reported.append)
    return sweep, dataset, ResultsStore(runs_dir), reported


def test_variants_differ_in_one_field_and_share_the_standard_ticket(swept):
    sweep, _, _, reported = swept
    assert len(sweep.variants) == 6 and len(sweep.experiments()) == 4  # the standard ticket is one run
    standard = sweep.standard.spec
    for variant in sweep.variants:
        spec = variant.experiment.spec
        fields = {"criteria": spec.pruning.criterion, "mask1": spec.ticket.mask1, "mask0": spec.ticket.mask0}
        expected = {"criteria": standard.pruning.criterion, "mask1": standard.ticket.mask1,
                    "mask0": standard.ticket.mask0}
        changed = {study for study in fields if fields[study] != expected[study]}
        assert changed <= {variant.study} and spec.baselines == ()  # `random` is the baseline
    # large_final is written as the spec default, so the run id is plain `ticketlab imp`'s
    plain, _ = prepare(spec_from_dict(BASE), sweep.standard.runs_dir, dataset=make_tiny_dataset())
    assert sweep.runs("criteria")["large_final"] == plain.run_id == sweep.standard.run_id
    assert len(reported) == 4 * 3  # 4 runs x 3 levels x 1 seed: nothing computed twice


def test_a_finished_sweep_is_reused_not_retrained(swept):
    sweep, dataset, _, _ = swept
    again, _ = plan(spec_from_dict(BASE), NAMES, sweep.standard.runs_dir, dataset=dataset)
    reported = []
    run_sweep(again, dataset=dataset, report=reported.append)
    assert reported == []


def test_chosen_variants_run_first_each_run_once(swept):
    sweep, _, _, _ = swept
    runs = {(v.study, v.name): v.experiment.run_id for v in sweep.variants}
    order = [e.run_id for e in sweep.experiments([("mask0", "freeze_init"), ("criteria", "snip"),
                                                  ("mask1", "rewind")])]
    assert order[:3] == [runs["mask0", "freeze_init"], runs["criteria", "snip"], sweep.standard.run_id]
    assert sorted(order) == sorted(e.run_id for e in sweep.experiments()) and len(set(order)) == 4
    with pytest.raises(TicketlabError, match="no variant 'movement' in study 'criteria'"):
        sweep.experiments([("criteria", "movement")])


def test_study_tables_and_figures_read_the_store(swept, tmp_path):
    sweep, _, store, _ = swept
    table = study_table(store, "mask1", sweep.runs("mask1"), densities=(0.9, 0.5))
    assert [level for level, _ in table.columns] == [1, 2]
    assert all(cell is not None for cells in table.rows.values() for cell in cells)
    assert table.at("rewind", 0.6) is table.rows["rewind"][1]
    text = table.markdown()
    assert text.splitlines()[0].startswith("| mask1 | 80.") and "| constant_same_sign |" in text
    empty = study_table(store, "mask1", {"rewind": "0" * 12})
    assert empty.columns == () and empty.markdown() == "(mask1: no level has finished yet)"
    written = plot_study(store, sweep.title("mask1"), sweep.runs("mask1"), tmp_path / "mask1", formats=("png",))
    assert [p.name for p in written] == ["mask1.png"] and written[0].stat().st_size > 0


def test_a_collapsed_curve_gets_a_zoomed_panel_on_the_top_points():
    # small_final at chance (11.35%) would squash 98.0 and 97.5 into one line: zoom on 92-98.6
    assert zoom_limits([98.0, 97.5, 11.35]) == pytest.approx((92.0, 98.6))
    assert zoom_limits([98.0, 97.0, 93.0]) is None  # a 5-point spread reads fine unzoomed
    assert zoom_limits([]) is None


def test_mask1_and_mask0_actions_shape_the_levels(swept):
    sweep, dataset, store, _ = swept
    signed = next(v.experiment for v in sweep.variants if v.name == "constant_same_sign")
    replicate = Replicate(signed.spec, signed.run_id, 0, store, dataset)
    init, keep = replicate.initial_weights(), replicate.mask("imp", 2)
    start = replicate.start_weights("imp", 2)
    for name in keep:
        std = glorot_std(keep[name].shape)
        assert torch.allclose(start[name][keep[name]], std * torch.sign(init[name][keep[name]]))
        assert torch.equal(start[name][~keep[name]], init[name][~keep[name]])

    frozen = next(v.experiment for v in sweep.variants if v.name == "freeze_init")
    root = frozen.runs_dir / frozen.run_id / "seed_0" / "imp"
    mask = Mask(load_tensors(root / "level_2" / "mask.safetensors"))
    final = load_tensors(root / "level_2" / "final.safetensors")
    init = load_tensors(frozen.runs_dir / frozen.run_id / "seed_0" / "init.safetensors")
    for name, kept in mask.items():
        assert torch.equal(final[name][~kept], init[name][~kept])  # frozen at their initial values
        assert not torch.equal(final[name][kept], init[name][kept])  # the kept ones trained


def test_one_shot_mask_matches_a_one_shot_imp_level(tmp_path):
    dataset = make_tiny_dataset()
    data = BASE | {"pruning": {"criterion": "snip", "one_shot": True, "target_density": 0.1}}
    experiment, _ = prepare(spec_from_dict(data), tmp_path, dataset=dataset)
    run_experiment(experiment, dataset=dataset)
    root = tmp_path / experiment.run_id / "seed_0"
    initial = load_tensors(root / "init.safetensors")
    model = build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mask = one_shot_mask(model, initial, None, "snip", 0.1, dataset=dataset, batch_size=32)
    assert mask == Mask(load_tensors(root / "imp" / "level_1" / "mask.safetensors"))
    assert mask.density == pytest.approx(0.1, abs=0.001)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # model untouched
    final = load_tensors(root / "imp" / "level_0" / "final.safetensors")
    large = one_shot_mask(model, initial, final, "large_final", 0.1)
    assert large.density == pytest.approx(0.1, abs=0.001) and large != mask


@pytest.mark.parametrize("criterion, final, dataset, message", [
    ("snip", None, None, "needs loss gradients on training data"),
    ("large_final", None, make_tiny_dataset(), "scores trained weights"),
    ("largest", None, None, "valid names: .*large_final_same_sign"),
])
def test_one_shot_mask_refuses_missing_inputs(criterion, final, dataset, message):
    model = build_model("lenet_300_100", (1, 8, 8), 4, seed=0)
    with pytest.raises(TicketlabError, match=message):
        one_shot_mask(model, model.state_dict(), final, criterion, 0.1, dataset=dataset)


def test_one_shot_to_an_empty_layer_is_refused_before_training(tmp_path):
    model = build_model("lenet_300_100", (1, 8, 8), 4, seed=0)
    with pytest.raises(TicketlabError, match="keep none"):
        one_shot_mask(model, model.state_dict(), model.state_dict(), "large_final", 1e-5)
    data = {"pruning": {"one_shot": True, "target_density": 1e-5}}
    with pytest.raises(TicketlabError, match="one shot to density 1e-05 would leave layer fc1.weight"):
        prepare(spec_from_dict(data), tmp_path, dataset=make_tiny_dataset())


@pytest.mark.parametrize("names, message", [
    ({"criteria": ["large_final", "biggest"]}, "unknown criterion 'biggest'; valid names: grad"),
    ({"mask1": ["signed_constant"]}, "unknown mask-1 action 'signed_constant'; valid names: constant"),
    ({"mask0": ["freeze"]}, "unknown mask-0 action 'freeze'; valid names: freeze_init"),
    ({"masks": None}, "unknown study 'masks'; valid: criteria, mask1, mask0"),
])
def test_bad_names_are_refused_before_any_training(names, message, tmp_path):
    with pytest.raises(TicketlabError, match=message):
        plan(ExperimentSpec(), names, tmp_path, dataset=make_tiny_dataset())
    assert not any(tmp_path.iterdir())


def test_default_choices_list_each_criterion_once():
    choices = study_choices()
    assert "large_final" in choices["criteria"] and "magnitude" not in choices["criteria"]
    assert len(choices["criteria"]) == 14 and len(choices["mask1"]) == 7 and len(choices["mask0"]) == 3


def test_cli_refuses_bad_names_and_runs_a_study(capsys, tmp_path):
    runs = ["--runs-dir", str(tmp_path)]
    assert main(["deconstruct", "--mask1", "rewind,nope", *runs]) == 2
    assert "valid names: constant" in capsys.readouterr().err and not any(tmp_path.iterdir())
    code = main(["deconstruct", "--studies", "mask0", "--mask0", "zero,zero_or_freeze_by_movement",
                 "--iterations", "20", "--eval-every", "10", "--levels", "1", *runs])
    out = capsys.readouterr().out
    assert code == 0
    assert "2 variants in 2 distinct runs" in out and "| zero_or_freeze_by_movement |" in out
    assert "mask0.png" in out

    # --report trains nothing: a variant not run yet shows '–' in every column
    code = main(["deconstruct", "--studies", "mask0", "--mask0", "zero,freeze_init", "--report",
                 "--iterations", "20", "--eval-every", "10", "--levels", "1", *runs])
    out = capsys.readouterr().out
    assert code == 0 and "seed 0" not in out
    assert "| freeze_init | – |" in out and "| zero | –" not in out  # one column: level 1
