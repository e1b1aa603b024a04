"""Your own network: `--model my_pkg.my_module:build` (or `model.name = "my_pkg.my_module:build"`).

`build(input_shape, num_classes)` returns any `nn.Module`. The module is imported by its
dotted path (so spawned workers import it the same way: it must be importable there, e.g. on
PYTHONPATH). The network it returns learns what the papers' networks know:
- prunable weights: the `weight` of every Linear and Conv1d/2d/3d, found by module type;
  biases, normalisation and other parameters are never pruned;
- the output layer: the last Linear (the last prunable layer if there is no Linear);
- a seeded initialisation of every parameter: the module is built with torch's global
  generator seeded from the seed (inside `fork_rng`, so the caller's state is untouched), so
  parameters of any type get their own default init reproducibly; then Linear/Conv weights
  are re-drawn from `init_scheme` ("kaiming_normal" unless the class sets it), biases zeroed,
  batch-norm scales drawn from U(0, 1), as for the CIFAR networks.
A class may define `prunable_names()` / `layer_kind()` itself; its own methods win.
Once built, the network runs one batch of two zero inputs: it must return logits of shape
(2, num_classes), else the build fails with a clear error, before anything is recorded.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from ticketlab.errors import TicketlabError

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class OwnNetwork:
    """Mixed into the class of a user's module (after it, so the module's own methods win)."""

    init_scheme: str = "kaiming_normal"
    batchnorm_init: str = "uniform"

    def prunable_names(self) -> list[str]:
        return [f"{name}.weight" for name, module in self.named_modules()
                if isinstance(module, PRUNABLE_TYPES) and isinstance(getattr(module, "weight", None), nn.Parameter)]

    def output_name(self) -> str:
        linears = [f"{name}.weight" for name, module in self.named_modules() if isinstance(module, nn.Linear)]
        return linears[-1] if linears else self.prunable_names()[-1]

    def layer_kind(self, name: str) -> str:
        if name == self.output_name():
            return "output"
        module = self.get_submodule(name.rsplit(".", 1)[0])
        return "fc" if isinstance(module, nn.Linear) else "conv"


def is_own_model(name: str) -> bool:
    return ":" in name


def own_factory(name: str):
    """The builder of `module.path:callable`, checked; errors say what is wrong and how to fix it."""
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise TicketlabError(f"model {name!r}: an own model is named 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as error:  # an import can fail in any way: report it as a ticketlab error
        raise TicketlabError(
            f"model {name!r}: cannot import module {module_name!r} ({type(error).__name__}: {error}); "
            "is it on PYTHONPATH (for every worker process too)?"
        ) from None
    builder = module
    for part in attr.split("."):
        builder = getattr(builder, part, None)
    if not callable(builder):
        raise TicketlabError(f"model {name!r}: module {module_name!r} has no callable {attr!r}")

    def build(input_shape, num_classes, seed: int = 0):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                model = builder(tuple(input_shape), num_classes)
            except TicketlabError:
                raise
            except (Exception, SystemExit) as error:  # sys.exit() in a builder is a failure, not a quiet exit
                raise TicketlabError(f"model {name!r}: building it failed ({type(error).__name__}: {error})") from None
        if not isinstance(model, nn.Module):
            raise TicketlabError(f"model {name!r}: {attr}(input_shape, num_classes) returned "
                                 f"{type(model).__name__}, not a torch.nn.Module")
        cls = type(model)
        if not isinstance(model, OwnNetwork):
            model.__class__ = type(cls.__name__, (cls, OwnNetwork), {"__module__": cls.__module__})
        if not model.prunable_names():
            raise TicketlabError(f"model {name!r} has nothing to prune: no Linear or Conv1d/2d/3d layer with a "
                                 "weight parameter")
        _check_output(model, name, tuple(input_shape), num_classes, seed)
        return model

    return build


def _check_output(model: nn.Module, name: str, input_shape: tuple, num_classes: int, seed: int) -> None:
    """One forward pass on a batch of two zero inputs, in eval mode (no batch-norm statistics
    change) and on a forked generator: the logits must have shape (2, num_classes), so that a
    wrong head is refused before anything is recorded, not as an IndexError in training."""
    batch = 2
    was_training = model.training
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        model.eval()
        try:
            output = model(torch.zeros((batch, *input_shape)))
        except (Exception, SystemExit) as error:
            raise TicketlabError(f"model {name!r}: a forward pass on a batch of {batch} inputs of shape "
                                 f"{input_shape} failed ({type(error).__name__}: {error}); the network must "
                                 "take inputs of the data set's shape") from None
        finally:
            model.train(was_training)
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
    if shape != (batch, num_classes):
        got = f"outputs of shape {shape}" if shape is not None else f"a {type(output).__name__}"
        raise TicketlabError(f"model {name!r} gives {got} for a batch of {batch} inputs of shape {input_shape}; "
                             f"expected ({batch}, {num_classes}): one logit per class of the data set "
                             f"({num_classes} classes)")
