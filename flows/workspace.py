"""Isolated experiment workspaces: how an orchestrated run uses DVC without touching the user's checkout.

Each run clones the project's committed HEAD into ``.work/runs/<name>``, points it at the project's DVC cache
(so outputs and DVC's run-cache are shared: a stage already computed with the same inputs is restored, not
rerun), writes its params overrides, reproduces stages one at a time, then saves the result as a DVC
experiment and pushes it to the project, where `dvc exp show` and `dvc metrics diff` see it. Concurrent runs
each have their own clone, so they cannot corrupt each other's (or the user's) workspace. Every path a stage
gets (params, $TOP_DATA_DIR) is absolute: a relative one would point elsewhere from inside the clone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline import EXPERIMENT_NAME
from top.data.paths import PATH_PARAMS, absolute_params, with_given
from top.errors import ParamsError

RUNS_DIR = ".work/runs"
# Exit code of a stage that failed on user input (bad params, missing data): retrying cannot help.
USER_ERROR_EXIT = 2


class StageFailed(RuntimeError):
    def __init__(self, stage: str, exit_code: int, message: str) -> None:
        super().__init__(f"stage {stage} failed (exit {exit_code}): {message}")
        self.stage, self.exit_code = stage, exit_code

    @property
    def user_error(self) -> bool:
        return self.exit_code == USER_ERROR_EXIT


@dataclass(frozen=True)
class StageResult:
    stage: str
    ran: bool  # False: DVC found it up to date (or restored it from its run-cache)
    log: str


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for DVC and the stages: this process's, with ``extra`` on top and this interpreter's
    tools first on PATH."""
    env = dict(os.environ) | dict(extra or {})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


def run_tool(args: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command (git, dvc, a stage) in ``cwd`` with ``tool_env(env)``; the caller checks the exit code."""
    return subprocess.run(args, cwd=cwd, env=tool_env(env), capture_output=True, text=True, check=False)


def _checked(args: list[str], cwd: Path) -> str:
    result = run_tool(args, cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed in {cwd}: {(result.stderr or result.stdout)[-2000:]}")
    return result.stdout


def create_workspace(
    project: Path, name: str, overrides: dict[str, Any], env: Mapping[str, str] | None = None
) -> tuple[Path, dict[str, str]]:
    """Clone ``project``'s HEAD for run ``name``, share its DVC cache, and apply the params ``overrides``.

    Paths in ``overrides`` must be absolute already (the flow resolves them where the user gave them); a
    relative path committed in params.yaml is made absolute relative to ``project``, where `dvc repro` reads
    it. Returns the workspace and the environment its stages add to this process's: ``env`` with the form in
    which each path made absolute here was given.
    """
    if not EXPERIMENT_NAME.match(name):
        raise ParamsError(f"run name {name!r} must be letters, digits, '.', '_' or '-' (at most 64)")
    project = project.resolve()
    workspace = project / RUNS_DIR / name
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.parent.mkdir(parents=True, exist_ok=True)
    _checked(["git", "clone", "--quiet", str(project), str(workspace)], project)
    for key in ("user.name", "user.email"):
        value = run_tool(["git", "config", key], project).stdout.strip() or (
            "top pipeline" if key == "user.name" else "top@localhost"
        )
        _checked(["git", "config", key, value], workspace)
    _checked(["dvc", "cache", "dir", "--local", str(project / ".dvc" / "cache")], workspace)
    params_file = workspace / "params.yaml"
    committed = get_params(params_file, [key for key in PATH_PARAMS if key not in overrides])
    resolved, given = absolute_params(committed, project)
    set_params(params_file, overrides | resolved)
    return workspace, with_given(env or {}, given)


def get_params(path: Path, keys: list[str]) -> dict[str, Any]:
    """The values of dotted ``keys`` present in params.yaml (a key it lacks is left out)."""
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    values = {}
    for dotted in keys:
        node = params
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            values[dotted] = node
    return values


def set_params(path: Path, overrides: dict[str, Any]) -> None:
    """Set dotted keys (``prune.target_macs``) in params.yaml; an unknown key is an error, not a new key."""
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = params
        for part in parents:
            if not isinstance(node, dict) or part not in node:
                raise ParamsError(f"unknown params key {dotted!r}")
            node = node[part]
        if not isinstance(node, dict) or leaf not in node:
            raise ParamsError(f"unknown params key {dotted!r}")
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def reproduce_stage(workspace: Path, stage: str, env: Mapping[str, str] | None = None) -> StageResult:
    """`dvc repro` of one stage, with ``env`` added to its environment: DVC decides whether it must run; a
    failure carries the stage's own error line."""
    result = run_tool(["dvc", "repro", "--single-item", stage], workspace, env)
    log = result.stdout + result.stderr
    if result.returncode != 0:
        errors = [line for line in log.splitlines() if line.startswith("error: stage")]
        message = errors[-1] if errors else log.strip()[-2000:]
        # dvc exits 255 on a failed command; the stage's own code is in its message ("exited with 2").
        code = USER_ERROR_EXIT if errors else result.returncode
        raise StageFailed(stage, code, message)
    return StageResult(stage, ran=f"Running stage '{stage}'" in result.stdout, log=log)


def save_experiment(workspace: Path, name: str, stages: tuple[str, ...]) -> None:
    """Record the workspace (params, dvc.lock, metrics) as DVC experiment ``name`` in the project.

    Only ``stages`` (the ones this run reproduced) are committed: a stage the run skipped on purpose (the
    Flexible BERT ones, unless asked for) has no outputs here, and `dvc exp save` would refuse to save.
    """
    # Metrics files not yet committed in the project are untracked in the clone: include them explicitly.
    args = ["dvc", "exp", "save", "--force", "-n", name, "--include-untracked", "artifacts/metrics", *stages]
    _checked(args, workspace)
    _checked(["dvc", "exp", "push", "--force", "--no-cache", "origin", name], workspace)


def read_metrics(workspace: Path, stage: str) -> dict[str, Any] | None:
    path = workspace / "artifacts" / "metrics" / f"{stage}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def remove_workspace(workspace: Path) -> None:
    shutil.rmtree(workspace, ignore_errors=True)
