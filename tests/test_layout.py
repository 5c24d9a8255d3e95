"""The package layout that shows the architecture, checked from the imports.

The library (top/) knows nothing of stages, orchestration or studies; stages and studies never import the
Prefect flows; pipeline/ holds exactly the dvc.yaml stages.
"""

import ast
from pathlib import Path

import pytest
import yaml

from .conftest import REPO_ROOT


def imported_packages(package: str) -> dict[str, set[str]]:
    """For every module of ``package``: the top-level packages it imports, function-level imports included."""
    found = {}
    for source in sorted((REPO_ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(source.relative_to(REPO_ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("top", {"pipeline", "flows", "studies", "prefect"}), ("pipeline", {"flows", "studies"}), ("studies", {"flows"})],
)
def test_package_does_not_import(package, forbidden):
    offenders = {module: names & forbidden for module, names in imported_packages(package).items() if names & forbidden}
    assert not offenders, f"{package}/ must not import {sorted(forbidden)}: {offenders}"


def test_pipeline_holds_exactly_the_dvc_stages():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    commands = {stage["cmd"].removeprefix("python -m ").split()[0] for stage in stages.values()}
    modules = {f"pipeline.{path.stem}" for path in Path(REPO_ROOT / "pipeline").glob("*.py") if path.stem != "__init__"}
    assert commands == modules
    assert not [path for path in (REPO_ROOT / "pipeline").iterdir() if path.is_dir() and path.name != "__pycache__"]
