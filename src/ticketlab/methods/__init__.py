"""Methods beyond IMP, each a registered object on the same engine and store (issue #13).

`METHODS` holds: `imp` (the default), `snip`, `synflow`, `grasp` (pruning at initialisation),
`gmp`, `prune_each_epoch` (gradual pruning), `rigl`, `set` (dynamic sparse training),
`early_bird`, `transfer` (ticket transfer across data sets or optimizers). Definitions, defaults and references: each module's docstring and
docs/methods.md.
"""

from ticketlab.methods.base import IMP, METHODS, Found, Method, Planned, Problem
from ticketlab.methods import at_init, dynamic, early_bird, gradual, transfer  # noqa: F401  (registers the methods)

__all__ = ["IMP", "METHODS", "Found", "Method", "Planned", "Problem"]
