"""Experiment specs: frozen dataclasses, one per concern, loaded from TOML and validated.

The run id is a hash of the resolved spec's *identity* (data, model, training, pruning,
rewinding). Seeds and baselines are not part of it: a replicate or a baseline added later
joins the same run. Fields equal to their dataclass default are left out of the hash, so a
new field whose default changes nothing keeps old run ids valid (OpenLTH's hparams idea).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from ticketlab.errors import SpecError
from ticketlab.experiments.stable_rewind import LADDER
from ticketlab.masks.pipeline import STRATEGIES as PRUNING_STRATEGIES
from ticketlab.schedules import PAPER_TRAINING, SMALL_DATA_TRAINING, model_recipe
from ticketlab.track.spec import TrackSpec
from ticketlab.training import TrainSpec

STRATEGIES = tuple(PRUNING_STRATEGIES.names())  # the registry of masks.pipeline
FIRST_SECTIONS = ("data", "model", "training", "pruning", "rewind")
SECTIONS = FIRST_SECTIONS + ("ticket", "method")
SEED_LIMIT = 2**32  # the batch order's numpy SeedSequence and torch generators take seeds in [0, 2**32)



@dataclass(frozen=True)
class DataSpec:
    name: str = "digits"
    val_size: int | None = None
    path: str | None = None
    normalization: str = "standard"  # or "unit": pixels / 255, as Zhou et al.'s code


@dataclass(frozen=True)
class ModelSpec:
    name: str = "lenet_300_100"


@dataclass(frozen=True)
class TrainingSpec:
    """The training schedule; unset fields take the paper's schedule for the model."""

    optimizer: str | None = None
    lr: float | None = None
    batch_size: int | None = None
    iterations: int | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    eval_every: int | None = None
    # Added with the CIFAR networks; unset they keep old specs' behaviour and run ids.
    lr_schedule: str | None = None  # constant, step, warmup, cosine (training.lr.LR_SCHEDULES)
    milestones: tuple[int, ...] | None = None  # iterations, for the step schedule
    gamma: float | None = None
    warmup: int | None = None  # iterations of linear warm-up
    augment: bool | None = None  # random crop + flip per batch
    precision: str | None = None  # fp32 (unset) or bf16
    epochs: float | None = None  # sets iterations from the training-set size when iterations is unset
    milestone_epochs: tuple[float, ...] | None = None  # sets milestones when milestones is unset

    def train_spec(self) -> TrainSpec:
        return TrainSpec(**{k: v for k, v in dataclasses.asdict(self).items()
                            if v is not None and k not in EPOCH_FIELDS})


EPOCH_FIELDS = ("epochs", "milestone_epochs")
NEW_TRAINING_FIELDS = ("lr_schedule", "milestones", "gamma", "warmup", "augment", "precision")


@dataclass(frozen=True)
class PruningSpec:
    """How masks shrink from level to level.

    `rates` are per layer kind (conv, fc, output), each the fraction of a layer's
    *remaining* weights pruned per level (Frankle & Carbin 2019). `strategy = "global"`
    uses one threshold over all layers but `exclude` at `global_rate`. `one_shot` prunes
    straight to `target_density` at level 1 instead of level by level.
    """

    criterion: str = "magnitude"
    strategy: str = "layerwise"
    rates: dict[str, float] = field(default_factory=dict)
    global_rate: float = 0.2
    exclude: tuple[str, ...] = ()
    levels: int | None = None
    target_density: float | None = None
    one_shot: bool = False


@dataclass(frozen=True)
class RewindSpec:
    """Where survivors restart: iteration 0 (Frankle & Carbin 2019) or iteration k of the
    dense run ("late rewinding", Frankle et al. 2019). Give `iteration` or `epochs`, or
    `iteration = "stable"`: the smallest k of the ladder `stable_candidates` (fractions of
    training) at which the dense network's test error barrier is under `stable_threshold`,
    measured before IMP (experiments/stable_rewind.py)."""

    iteration: int | str = 0
    epochs: float | None = None
    stable_threshold: float = 0.02
    stable_candidates: tuple[float, ...] = LADDER


@dataclass(frozen=True)
class TicketSpec:
    """What a level does with its mask (Zhou et al. 2019): `mask1` sets the kept weights'
    start values, `mask0` what the pruned weights are held at. The defaults are the
    standard ticket: rewind the kept weights, zero the pruned ones."""

    mask1: str = "rewind"
    mask0: str = "zero"


@dataclass(frozen=True)
class MethodSpec:
    """How the experiment finds its sparse network (`ticketlab.methods.METHODS`): `imp` (the
    default: the IMP line, levels and baselines as configured above) or a method that trains
    one level at `pruning.target_density` (snip, synflow, grasp, gmp, prune_each_epoch, rigl,
    set, early_bird), or `transfer` (another run's ticket trained here). The other fields are method parameters; each method reads only its own and
    documents its defaults (docs/methods.md). Non-default fields alone enter the run id."""

    name: str = "imp"
    batches: int = 1  # snip, grasp: gradient batches summed for the scores
    rounds: int = 100  # synflow: pruning rounds (exponential schedule to the target)
    start_fraction: float = 0.1  # gmp: pruning starts at this fraction of training
    end_fraction: float = 0.75  # gmp: reaches the target here; rigl/set: last mask update here
    every: int = 100  # gmp, rigl/set: iterations between mask updates
    rate: float | None = None  # prune_each_epoch: fraction of remaining weights pruned per epoch (None: solved)
    distribution: str = "uniform"  # rigl/set: per-layer densities, "uniform" or "erk"
    update_fraction: float = 0.3  # rigl/set: initial drop/grow fraction, cosine-decayed
    window: int = 5  # early_bird: FIFO length of mask distances
    threshold: float = 0.1  # early_bird: stop when every distance in the FIFO is below this
    mask_kind: str = "auto"  # early_bird: the masks the rule compares, "weights", "channels" (BN scales) or "auto"
    channel_ratio: float = 0.5  # early_bird, channel masks: fraction of BN channels pruned (the paper: 0.3/0.5/0.7)
    source_run: str | None = None  # transfer: the run (of this store) whose ticket is trained here
    source_level: int | None = None  # transfer: the source's IMP level


@dataclass(frozen=True)
class StabilitySpec:
    """An instability study of the run, made once its levels are trained: what `ticketlab
    stability RUN` measures (Frankle et al. 2020; analysis/stability_study.py), from a spec or
    a sweep. No `rewind_iterations`: no study. Not part of the run id: it measures the run and
    changes none of its results, so adding it to a finished run's spec resumes that run."""

    rewind_iterations: tuple[int, ...] = ()
    levels: tuple[int, ...] = (0,)  # 0: the dense network; L >= 1: level L's ticket and `branches`
    branches: tuple[str, ...] = ("imp",)  # at levels >= 1: imp, random_mask, reinit
    copies: int = 2
    points: int = 30


@dataclass(frozen=True)
class ExperimentSpec:
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    pruning: PruningSpec = field(default_factory=PruningSpec)
    rewind: RewindSpec = field(default_factory=RewindSpec)
    ticket: TicketSpec = field(default_factory=TicketSpec)
    method: MethodSpec = field(default_factory=MethodSpec)
    seeds: tuple[int, ...] = (0,)
    baselines: tuple[str, ...] = ()
    stability: StabilitySpec = field(default_factory=StabilitySpec)
    track: TrackSpec = field(default_factory=TrackSpec)  # where numbers stream (ticketlab.track); not in the run id

    def identity(self) -> dict:
        """The part of the spec that names the run (everything but seeds, baselines, the
        stability study and the trackers).

        Sections added after the first release appear only when they differ from their
        defaults, so existing run ids stay valid.
        """
        identity = {name: _non_default(getattr(self, name)) for name in SECTIONS}
        return {name: value for name, value in identity.items() if value or name in FIRST_SECTIONS}

    def run_id(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The resolved spec as TOML, every default visible."""
        lines = [f"seeds = {list(self.seeds)}", f"baselines = {json.dumps(list(self.baselines))}"]
        shown = SECTIONS + (("stability",) if self.stability.rewind_iterations else ()) + (("track",) if self.track.on else ())
        for section in shown:
            lines.append(f"\n[{section}]")
            for key, value in dataclasses.asdict(getattr(self, section)).items():
                if value is None:
                    lines.append(f"# {key} = (unset)")
                elif isinstance(value, dict):
                    inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in sorted(value.items()))
                    lines.append(f"{key} = {{ {inner} }}")
                else:
                    lines.append(f"{key} = {json.dumps(list(value) if isinstance(value, tuple) else value)}")
        return "\n".join(lines) + "\n"


def _non_default(section) -> dict:
    out = {}
    for f in fields(section):
        value = getattr(section, f.name)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING
        )
        if value != default:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


# ---------------------------------------------------------------- loading and validation

def _check_type(value, hint, where: str):
    """Coerce `value` to `hint` (int -> float allowed, lists -> tuples) or raise SpecError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, where)
            except SpecError as error:
                errors.append(error)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{where} must be a table, got {value!r}")
        _, item = typing.get_args(hint)
        return {str(k): _check_type(v, item, f"{where}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise SpecError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def section_from_dict(cls, data: dict, where: str):
    """Build dataclass `cls` from `data`, naming the field in every error."""
    if not isinstance(data, dict):
        raise SpecError(f"[{where}] must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise SpecError(f"unknown key {where}.{key}; valid keys in [{where}]: {', '.join(sorted(known))}")
    values = {key: _check_type(value, hints[key], f"{where}.{key}") for key, value in data.items()}
    return cls(**values)


def spec_from_dict(data: dict) -> ExperimentSpec:
    sections = {"data": DataSpec, "model": ModelSpec, "training": TrainingSpec, "pruning": PruningSpec,
                "rewind": RewindSpec, "ticket": TicketSpec, "method": MethodSpec, "stability": StabilitySpec,
                "track": TrackSpec}
    known = set(sections) | {"seeds", "baselines"}
    for key in data:
        if key not in known:
            raise SpecError(f"unknown key {key!r} in spec; valid top-level keys: {', '.join(sorted(known))}")
    parts = {name: section_from_dict(cls, data.get(name, {}), name) for name, cls in sections.items()}
    seeds = _check_type(data.get("seeds", [0]), tuple[int, ...], "seeds")
    baselines = _check_type(data.get("baselines", []), tuple[str, ...], "baselines")
    _check_counts(parts)
    return ExperimentSpec(seeds=seeds, baselines=baselines, **parts)


# counts and lengths that must be positive (or >= 0) when set: checked on load, before any
# of them divides or sizes something
POSITIVE = {"training": ("batch_size", "iterations", "eval_every", "epochs"),
            "method": ("batches", "rounds", "every", "window")}
NON_NEGATIVE = {"training": ("warmup",)}


def _check_counts(parts: dict) -> None:
    for limits, low, wanted in ((POSITIVE, 0, "a positive {}"), (NON_NEGATIVE, -1, "an {} >= 0")):
        for section, names in limits.items():
            for name in names:
                value = getattr(parts[section], name)
                if value is not None and not (value > low and math.isfinite(value)):
                    kind = "integer" if isinstance(value, int) else "number"
                    raise SpecError(f"{section}.{name} must be {wanted.format(kind)}, got {value!r}")


def load_spec(path: str | Path) -> ExperimentSpec:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"spec file {path} does not exist") from None
    except UnicodeDecodeError:
        raise SpecError(f"spec file {path} is not a text file (not UTF-8); give a TOML spec, e.g. a "
                        "run's spec.toml") from None
    except OSError as error:
        raise SpecError(f"spec file {path} cannot be read: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"spec file {path} is not valid TOML: {error}") from None
    data.pop("executor", None)  # where the tasks run, not what they compute: --executor slurm reads it
    return spec_from_dict(data)


# ---------------------------------------------------------------- resolution

def resolve(spec: ExperimentSpec, *, train_examples: int, layer_kinds: dict[str, str],
            layer_sizes: dict[str, int]) -> ExperimentSpec:
    """Fill in model- and data-dependent defaults and check the whole spec, before training.

    Unset training fields take the paper's schedule for the model (a short schedule on the
    embedded digits data); `layer_kinds` and `layer_sizes` describe the model's prunable
    weights.
    """
    from ticketlab.masks import CRITERIA
    from ticketlab.masks.allocation import (
        LAYER_KINDS, default_rates, expected_density_after, kept_after, levels_to_reach, one_shot_rates,
        rates_by_layer,
    )

    training = _resolved_training(spec, train_examples)
    schedule = training.train_spec()
    recipe = model_recipe(spec.model.name)
    pruning = spec.pruning
    if recipe is not None and pruning.strategy == "layerwise" and not pruning.rates and not pruning.exclude \
            and pruning.global_rate == _default(PruningSpec, "global_rate"):
        # the network's own pruning (OpenLTH sparse_global, output layer dense) unless the spec chose
        rule = recipe["pruning"]
        outputs = tuple(n for n, kind in layer_kinds.items() if kind == "output") if rule["exclude_output"] else ()
        pruning = dataclasses.replace(pruning, strategy=rule["strategy"], global_rate=rule["global_rate"],
                                      exclude=outputs)
    CRITERIA.get(pruning.criterion)  # unknown names list the valid ones
    if pruning.strategy not in STRATEGIES:
        raise SpecError(f"pruning.strategy: unknown {pruning.strategy!r}; valid: {', '.join(STRATEGIES)}")
    rates = default_rates(spec.model.name) | pruning.rates
    for kind, rate in rates.items():
        if kind not in LAYER_KINDS:
            raise SpecError(f"pruning.rates.{kind}: unknown layer kind; valid: {', '.join(LAYER_KINDS)}")
        if not 0 <= rate < 1:
            raise SpecError(f"pruning.rates.{kind} must be in [0, 1), got {rate}")
    if not 0 < pruning.global_rate < 1:
        raise SpecError(f"pruning.global_rate must be in (0, 1), got {pruning.global_rate}")
    for name in pruning.exclude:
        if name not in layer_kinds:
            raise SpecError(f"pruning.exclude: {name!r} is not a prunable layer; layers: {', '.join(layer_kinds)}")
    if pruning.target_density is not None and not 0 < pruning.target_density < 1:
        raise SpecError(f"pruning.target_density must be in (0, 1), got {pruning.target_density}")
    if pruning.levels is not None and pruning.levels < 0:
        raise SpecError(f"pruning.levels must be >= 0, got {pruning.levels}")
    if pruning.one_shot and pruning.target_density is None:
        raise SpecError("pruning.one_shot needs pruning.target_density")
    if pruning.one_shot and pruning.levels not in (None, 1):
        raise SpecError(f"pruning.one_shot prunes once, so pruning.levels = {pruning.levels} cannot hold; "
                        "drop levels (or one_shot, to prune level by level)")
    if pruning.strategy == "layerwise" and pruning.global_rate != _default(PruningSpec, "global_rate"):
        raise SpecError(f"pruning.global_rate = {pruning.global_rate} is only for strategy = \"global\"; "
                        "drop it, or set pruning.rates per layer kind for layerwise pruning")
    if pruning.strategy == "layerwise" and pruning.exclude:
        raise SpecError("pruning.exclude is only for strategy = \"global\"; drop it, or set a layer kind's "
                        "rate to 0 in pruning.rates for layerwise pruning")
    if pruning.strategy == "global" and rates != default_rates(spec.model.name):
        raise SpecError("pruning.rates are only for strategy = \"layerwise\"; drop them, or set "
                        "pruning.global_rate for global pruning")
    per_layer = (
        rates_by_layer(layer_kinds, rates)
        if pruning.strategy == "layerwise"
        else {n: pruning.global_rate for n in layer_kinds if n not in pruning.exclude}
    )
    levels = pruning.levels
    if pruning.one_shot:
        levels = 1
    elif pruning.target_density is not None:
        implied = levels_to_reach(pruning.target_density, layer_sizes, per_layer)
        if levels is not None and levels != implied:
            # A resolved spec holds both, agreeing; only a contradiction is refused.
            raise SpecError(
                f"pruning.levels = {levels} and pruning.target_density = {pruning.target_density} are both set "
                f"and disagree (that density takes {implied} levels); set only one of them"
            )
        levels = implied
    elif levels is None:
        levels = 5
    if not pruning.one_shot:
        _check_every_level_prunes(levels, layer_sizes, per_layer, pruning.strategy)
    if pruning.strategy == "layerwise" and not pruning.one_shot:
        for name, size in layer_sizes.items():
            if expected_density_after(levels, {name: size}, per_layer) == 0:
                raise SpecError(
                    f"pruning: {levels} levels at rate {per_layer[name]} would leave layer {name} "
                    "with no weights; use fewer levels or a lower rate"
                )
    if pruning.strategy == "layerwise" and pruning.one_shot:
        shot = one_shot_rates(layer_sizes, per_layer, pruning.target_density)
        for name, size in layer_sizes.items():
            if kept_after(size, shot[name]) == 0:
                raise SpecError(
                    f"pruning: one shot to density {pruning.target_density} would leave layer {name} "
                    "with no weights; use a higher target_density"
                )
    pruning = dataclasses.replace(pruning, rates=rates, levels=levels)

    rewind = spec.rewind
    iteration = rewind.iteration
    if isinstance(iteration, str):
        rewind = _stable_rewind(spec)
    else:
        if recipe is not None and rewind == RewindSpec() and recipe["rewind_iteration"] < schedule.iterations:
            iteration = recipe["rewind_iteration"]  # late rewinding by default for these networks
        if rewind.epochs is not None:
            if not (math.isfinite(rewind.epochs) and rewind.epochs >= 0):
                raise SpecError(f"rewind.epochs must be a finite number >= 0, got {rewind.epochs}")
            iteration = round(rewind.epochs * math.ceil(train_examples / schedule.batch_size))
        if not 0 <= iteration < schedule.iterations:
            raise SpecError(
                f"rewind.iteration {iteration} is beyond the training length: it must be in "
                f"[0, training.iterations = {schedule.iterations})"
            )
        rewind = RewindSpec(iteration=iteration)
    from ticketlab.tickets import MASK0_ACTIONS, MASK1_ACTIONS

    MASK1_ACTIONS.get(spec.ticket.mask1)  # unknown names list the valid ones
    MASK0_ACTIONS.get(spec.ticket.mask0)
    from ticketlab.experiments.branches import baseline_names

    from ticketlab.methods import METHODS

    METHODS.get(spec.method.name).check(  # unknown names list the valid ones
        dataclasses.replace(spec, training=training, pruning=pruning, rewind=rewind), train_examples)
    for name in spec.baselines:
        if name not in baseline_names():
            raise SpecError(f"baselines: unknown baseline {name!r}; valid: {', '.join(baseline_names())}")
    if not spec.seeds or len(set(spec.seeds)) != len(spec.seeds):
        raise SpecError(f"seeds must be a non-empty list of distinct integers, got {list(spec.seeds)}")
    for seed in spec.seeds:
        if not 0 <= seed < SEED_LIMIT:
            raise SpecError(f"seeds: {seed} is out of range; a seed must be in [0, 2**32)")
    _check_stability(spec, schedule.iterations, levels)
    return dataclasses.replace(spec, training=training, pruning=pruning, rewind=rewind)


def _check_stability(spec: ExperimentSpec, iterations: int, levels: int | None) -> None:
    """A [stability] section the run can carry out, refused before anything trains."""
    study = spec.stability
    if not study.rewind_iterations:
        return
    if spec.method.name != "imp":
        raise SpecError(f"[stability] measures an IMP run's networks; method {spec.method.name} has no IMP levels")
    for name in ("copies", "points"):
        if getattr(study, name) < 2:
            raise SpecError(f"stability.{name} must be at least 2, got {getattr(study, name)}")
    for k in study.rewind_iterations:
        if not 0 <= k < iterations:
            raise SpecError(f"stability.rewind_iterations: k = {k} is beyond the schedule; each k must be in "
                            f"[0, training.iterations = {iterations})")
    for level in study.levels:
        if not 0 <= level <= (levels or 0):
            raise SpecError(f"stability.levels: the run has levels 0..{levels or 0}, not {level}")
    valid = ("imp", "random_mask", "reinit")
    for branch in study.branches:
        if branch not in valid:
            raise SpecError(f"stability.branches: unknown {branch!r}; valid: {', '.join(valid)}")
    if any(level > 0 for level in study.levels) and spec.ticket.mask0 != "zero":
        raise SpecError(f"[stability] holds pruned weights at zero (the paper's subnetworks); this run's "
                        f"ticket.mask0 is {spec.ticket.mask0!r}")


def _stable_rewind(spec: ExperimentSpec) -> RewindSpec:
    """A checked `iteration = "stable"` rewind section (the iteration is measured at run time)."""
    from ticketlab.experiments.stable_rewind import STABLE

    rewind = spec.rewind
    if rewind.iteration != STABLE:
        raise SpecError(f"rewind.iteration must be an integer or \"{STABLE}\", got {rewind.iteration!r}")
    if rewind.epochs is not None:
        raise SpecError("rewind.epochs and rewind.iteration = \"stable\" disagree; set only one of them")
    if not (math.isfinite(rewind.stable_threshold)):
        raise SpecError(f"rewind.stable_threshold must be a finite number, got {rewind.stable_threshold!r}")
    ladder = rewind.stable_candidates
    if not ladder or any(not (0 <= f < 1) for f in ladder) or list(ladder) != sorted(set(ladder)):
        raise SpecError(f"rewind.stable_candidates must be increasing fractions of training in [0, 1), e.g. "
                        f"{list(LADDER)}; got {list(ladder)}")
    if spec.method.name != "imp":
        raise SpecError(f"rewind.iteration = \"{STABLE}\" is measured before IMP; method {spec.method.name} "
                        "does not rewind")
    return RewindSpec(iteration=STABLE, stable_threshold=rewind.stable_threshold,
                      stable_candidates=tuple(float(f) for f in ladder))


def _default(cls, name: str):
    return next(f.default for f in fields(cls) if f.name == name)


def _check_every_level_prunes(levels: int, layer_sizes: dict[str, int], per_layer: dict[str, float],
                              strategy: str) -> None:
    """Refuse a level that would prune nothing: it would only retrain the previous level's ticket.

    A layer keeps round-to-nearest counts, so at a few weights (e.g. 9 at rate 0.1) a level
    prunes none; once no layer (global: no included weight) shrinks, no later level will.
    """
    from ticketlab.masks.allocation import kept_after

    if strategy == "layerwise":
        alive = {name: size for name, size in layer_sizes.items() if per_layer.get(name, 0.0) > 0}
    else:
        alive = {"pruned layers": sum(size for name, size in layer_sizes.items() if name in per_layer)}
        per_layer = {"pruned layers": next(iter(per_layer.values()), 0.0)}
    for level in range(1, levels + 1):
        after = {name: kept_after(count, per_layer[name]) for name, count in alive.items()}
        if after == alive:
            raise SpecError(
                f"pruning: level {level} would prune no weights ({', '.join(f'{n}: {c}' for n, c in alive.items())} "
                f"kept, rounding keeps them all); the last level that still prunes is {level - 1}: "
                f"use levels <= {level - 1}, or a higher rate"
            )
        alive = after


def _resolved_training(spec: ExperimentSpec, train_examples: int | None = None) -> TrainingSpec:
    """Defaults, then the paper's schedule or the network's recipe (`schedules.model_recipe`),
    then the spec's own fields. Fields added after the first release stay unset unless a recipe
    or the spec sets them, so old specs resolve (and hash) as before. Epoch counts become
    iterations at ceil(train_examples / batch_size) iterations per epoch."""
    _check_counts({"training": spec.training, "method": spec.method})  # a spec built without spec_from_dict
    defaults = {k: v for k, v in dataclasses.asdict(TrainSpec()).items() if k not in NEW_TRAINING_FIELDS}
    defaults |= PAPER_TRAINING.get(spec.model.name, {})
    recipe = model_recipe(spec.model.name)
    if recipe is not None:
        defaults |= recipe["training"]
    if spec.data.name == "digits":
        defaults.pop("epochs", None)
        defaults |= SMALL_DATA_TRAINING
    given = {k: v for k, v in dataclasses.asdict(spec.training).items() if v is not None}
    merged = defaults | given
    batch_size = merged["batch_size"]
    per_epoch = math.ceil(train_examples / batch_size) if train_examples else None
    if merged.get("epochs") is not None:
        if per_epoch is None:
            raise SpecError("training.epochs needs the training-set size; give training.iterations instead")
        from_epochs = max(1, round(merged["epochs"] * per_epoch))
        if "iterations" in given and "epochs" in given and given["iterations"] != from_epochs:
            raise SpecError(f"training.iterations = {given['iterations']} and training.epochs = {given['epochs']} "
                            f"({from_epochs} iterations) disagree; set only one of them")
        if "iterations" not in given:
            merged["iterations"] = from_epochs
        elif "epochs" not in given:
            merged["epochs"] = None  # the spec's iterations replace the recipe's epochs
    if merged.get("milestone_epochs") is not None:
        if "milestones" in given:
            if "milestone_epochs" not in given:
                merged["milestone_epochs"] = None  # the spec's milestones replace the recipe's
        elif per_epoch is None:
            raise SpecError("training.milestone_epochs needs the training-set size; give training.milestones")
        else:
            merged["milestones"] = tuple(max(1, round(m * per_epoch)) for m in merged["milestone_epochs"])
    resolved = TrainingSpec(**merged)
    resolved.train_spec()  # validates, naming the field
    return resolved


def training_recipe(model_name: str, dataset_name: str, given: dict | None = None,
                    train_examples: int | None = None) -> TrainingSpec:
    """The training schedule `imp` would use for `model_name` on `dataset_name`, with the fields
    in `given` set: one recipe per network, whichever command trains it (`ticketlab train` too)."""
    spec = ExperimentSpec(model=ModelSpec(name=model_name), data=DataSpec(name=dataset_name),
                          training=TrainingSpec(**(given or {})))
    return _resolved_training(spec, train_examples)
