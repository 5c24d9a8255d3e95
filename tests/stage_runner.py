"""Helpers to run stage entry points and DVC in a scratch project, as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .conftest import REPO_ROOT

PROJECT_FILES = ("dvc.yaml", "top", "pipeline", "flows", "studies", ".gitignore", ".dvcignore")


def scratch_project(root: Path, params: dict[str, Any]) -> Path:
    """Copy the pipeline code into ``root`` with the given params.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    write_params(root, params)
    return root


def write_params(root: Path, params: dict[str, Any]) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def stage_env(tmp_root: Path) -> dict[str, str]:
    """The venv's tools first on PATH, and DVC's site cache kept inside the test's temp dir."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_SITE_CACHE_DIR"] = str(tmp_root / "dvc-site-cache")
    env["DVC_NO_ANALYTICS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    return env


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def run_stage(stage: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", f"pipeline.{stage}"], cwd, env)


def init_dvc_repo(root: Path, env: dict[str, str]) -> None:
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.name", "top tests"],
        ["git", "config", "user.email", "tests@example.invalid"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "scratch project"],
    ):
        result = run(command, root, env)
        assert result.returncode == 0, f"{command}: {result.stderr}"
