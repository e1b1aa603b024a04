"""Data flows one way: lower layers never import the layers above them."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ticketlab"

# package -> packages it must not import
FORBIDDEN = {
    "supermasks": ("ticketlab.experiments", "ticketlab.cli"),
    "masks": ("ticketlab.experiments", "ticketlab.supermasks", "ticketlab.cli"),
    "training": ("ticketlab.experiments", "ticketlab.supermasks", "ticketlab.cli"),
    "models": ("ticketlab.experiments", "ticketlab.supermasks", "ticketlab.masks", "ticketlab.store"),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upper_ones(package):
    for path in sorted((SRC / package).rglob("*.py")):
        bad = [m for m in imported_modules(path) if m.startswith(FORBIDDEN[package])]
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_seeds_and_schedules_import_nothing_above_them():
    for name in ("seeds.py", "schedules.py"):
        assert not [m for m in imported_modules(SRC / name) if m.startswith("ticketlab.")]
