"""dvc.yaml names, for every stage, each project module its entry point imports (directly or through others).

A module missing from a stage's deps means DVC keeps a stale output when that module changes.
"""

import ast
from pathlib import Path

import pytest
import yaml

from .conftest import REPO_ROOT

PACKAGES = ("top", "pipeline", "flows", "studies")


def module_file(dotted: str) -> Path | None:
    path = REPO_ROOT.joinpath(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_files(source: Path) -> set[Path]:
    """Project files ``source`` imports, anywhere in its body (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES and (file := module_file(name)) is not None:
                found.add(file)
    return found


def closure(entry: Path) -> set[Path]:
    seen, todo = set(), [entry]
    while todo:
        file = todo.pop()
        if file not in seen:
            seen.add(file)
            todo += imported_files(file)
    return seen


STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_every_imported_module(name):
    stage = STAGES[name]
    module = stage["cmd"].removeprefix("python -m ").split()[0]
    deps = [REPO_ROOT / dep for dep in stage["deps"]]
    covered = lambda file: any(file == dep or dep in file.parents for dep in deps)  # noqa: E731
    missing = sorted(
        str(file.relative_to(REPO_ROOT))
        for file in closure(module_file(module))
        if not covered(file) and not (file.name == "__init__.py" and file.stat().st_size == 0)
    )
    assert not missing, f"stage {name} imports modules its dvc.yaml deps do not name: {missing}"
