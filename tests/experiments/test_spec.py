import pytest

from tinydata import make_tiny_dataset
from ticketlab.errors import SpecError, TicketlabError
from ticketlab.experiments import ExperimentSpec, load_spec, prepare, spec_from_dict


def resolved(data: dict, tmp_path):
    experiment, _ = prepare(spec_from_dict(data), tmp_path, dataset=make_tiny_dataset())
    return experiment.spec


@pytest.mark.parametrize(
    "data, field",
    [
        ({"pruning": {"rat": {}}}, "pruning.rat"),
        ({"trainig": {}}, "trainig"),
        ({"training": {"lr": "fast"}}, "training.lr"),
        ({"training": {"iterations": 1.5}}, "training.iterations"),
        ({"seeds": "0"}, "seeds"),
    ],
)
def test_malformed_specs_name_the_field(data, field):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        spec_from_dict(data)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"pruning": {"rates": {"fc": 1.5}}}, r"pruning\.rates\.fc"),
        ({"pruning": {"rates": {"fc": 0.0, "output": -0.1}}}, r"pruning\.rates\.output"),
        ({"pruning": {"rates": {"dense": 0.2}}}, r"pruning\.rates\.dense"),
        ({"pruning": {"criterion": "biggest"}}, "large_final"),
        ({"pruning": {"strategy": "random"}}, "layerwise"),
        ({"pruning": {"global_rate": 1.0, "strategy": "global"}}, r"pruning\.global_rate"),
        ({"rewind": {"iteration": 5000}, "training": {"iterations": 100}}, r"rewind\.iteration"),
        ({"rewind": {"epochs": 100.0}, "training": {"iterations": 100}}, r"rewind\.iteration"),
        ({"training": {"optimizer": "lion"}}, r"training\.optimizer"),
        ({"baselines": ["shuffle"]}, "reinit"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"pruning": {"one_shot": True}}, "target_density"),
        ({"pruning": {"rates": {"output": 0.9}, "levels": 40}}, "no weights"),
        ({"pruning": {"strategy": "global", "exclude": ["fc9.weight"]}}, r"pruning\.exclude"),
        ({"seeds": [-1]}, r"seeds: -1 is out of range"),
        ({"rewind": {"epochs": float("nan")}}, r"rewind\.epochs must be a finite number"),
        ({"seeds": [0, 2**32]}, r"seeds: 4294967296 is out of range"),
        ({"pruning": {"levels": 5, "target_density": 0.5}}, r"pruning\.levels = 5 and pruning\.target_density = 0\.5 .*takes 4 levels"),
        ({"pruning": {"one_shot": True, "target_density": 0.1, "levels": 3}}, r"one_shot .*pruning\.levels = 3"),
        ({"pruning": {"global_rate": 0.3}}, r"pruning\.global_rate = 0\.3 is only for strategy = \"global\""),
        ({"pruning": {"exclude": ["fc3.weight"]}}, r"pruning\.exclude is only for strategy = \"global\""),
        ({"pruning": {"strategy": "global", "rates": {"fc": 0.5}}}, r"pruning\.rates are only for strategy = \"layerwise\""),
        ({"pruning": {"levels": 200}}, r"level \d+ would prune no weights"),
        ({"pruning": {"strategy": "global", "levels": 200}}, r"level \d+ would prune no weights"),
    ],
)
def test_invalid_values_are_refused_before_training(data, message, tmp_path):
    with pytest.raises(TicketlabError, match=message):
        resolved(data, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing was written


def test_resolution_fills_the_papers_defaults(tmp_path):
    spec = resolved({"data": {"name": "mnist"}}, tmp_path)
    assert spec.training.lr == 1.2e-3 and spec.training.batch_size == 60 and spec.training.iterations == 50_000
    assert spec.pruning.rates == {"conv": 0.0, "fc": 0.2, "output": 0.1}
    conv = resolved({"model": {"name": "conv6"}, "data": {"name": "mnist"}}, tmp_path)
    assert conv.pruning.rates == {"conv": 0.15, "fc": 0.2, "output": 0.1}
    assert (conv.training.lr, conv.training.iterations) == (3e-4, 30_000)


def test_target_density_sets_the_number_of_levels(tmp_path):
    spec = resolved({"pruning": {"target_density": 0.5}}, tmp_path)
    # tiny LeNet 64-300-100-4: hidden at 20%, output at 10% per level; 3 levels -> 51.3%, 4 -> 41.1%
    assert spec.pruning.levels == 4


def test_epochs_rewind_point_is_converted_to_iterations(tmp_path):
    spec = resolved({"rewind": {"epochs": 2}, "training": {"batch_size": 32, "iterations": 100}}, tmp_path)
    assert spec.rewind.iteration == 16  # 256 examples / 32 = 8 iterations per epoch


def test_run_id_ignores_seeds_baselines_and_unchanged_defaults(tmp_path):
    a = resolved({}, tmp_path)
    b = resolved({"seeds": [3, 4], "baselines": ["reinit"]}, tmp_path)
    c = resolved({"training": {"lr": 1e-3}}, tmp_path)
    assert a.run_id() == b.run_id() != c.run_id()
    explicit = resolved({"training": {"iterations": a.training.iterations}}, tmp_path)
    assert explicit.run_id() == a.run_id()


def test_spec_files_round_trip_through_toml(tmp_path):
    spec = resolved({"pruning": {"levels": 2}, "seeds": [0, 1], "rewind": {"iteration": 10}}, tmp_path)
    path = tmp_path / "spec.toml"
    path.write_text(spec.to_toml())
    assert load_spec(path) == spec


def test_missing_or_broken_spec_file(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[pruning\nlevels = 3")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(tmp_path / "bad.toml")


def test_binary_spec_file_is_one_clear_error(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SpecError, match=r"weights\.safetensors is not a text file"):
        load_spec(path)
    with pytest.raises(SpecError, match="cannot be read"):
        load_spec(tmp_path)


@pytest.mark.parametrize("strategy", ["layerwise", "global"])
def test_levels_stop_at_the_last_level_that_still_prunes(tmp_path, strategy):
    with pytest.raises(SpecError, match=r"the last level that still prunes is (\d+)") as info:
        resolved({"pruning": {"strategy": strategy, "levels": 200}}, tmp_path)
    last = int(info.value.args[0].split("the last level that still prunes is ")[1].split(":")[0])
    assert 10 < last < 200
    assert resolved({"pruning": {"strategy": strategy, "levels": last}}, tmp_path).pruning.levels == last
    with pytest.raises(SpecError, match=f"level {last + 1} would prune no weights"):
        resolved({"pruning": {"strategy": strategy, "levels": last + 1}}, tmp_path)


@pytest.mark.parametrize("pruning", [
    {"target_density": 0.05}, {"one_shot": True, "target_density": 0.1},
    {"strategy": "global", "global_rate": 0.3, "target_density": 0.2, "exclude": ["fc3.weight"]},
])
def test_a_resolved_spec_resolves_to_itself(tmp_path, pruning):
    # A run's spec.toml holds levels *and* the target_density they came from: it must load again.
    once = resolved({"pruning": pruning}, tmp_path)
    path = tmp_path / "spec.toml"
    path.write_text(once.to_toml())
    twice, _ = prepare(load_spec(path), tmp_path / "again", dataset=make_tiny_dataset())
    assert twice.spec == once and twice.run_id == once.run_id()
