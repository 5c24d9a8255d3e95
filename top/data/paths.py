"""Paths a user gives relative to where they are, made absolute once, where they gave them.

A relative ``$TOP_DATA_DIR`` or ``data.data_dir`` means "relative to the directory I started this in". The
orchestration runs its stages elsewhere (the serving process in the project, each run's stages in its clone
under ``.work/runs/<name>``), so the process the user started resolves such a path against its own working
directory and hands the absolute path on. It also records the form the user gave, in ``$TOP_GIVEN_PATHS`` (a
JSON object: absolute path -> path as given), so that an error further down can name the path both ways.

Kept free of heavy imports: the Prefect services and flows use it as well as the stages.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "TOP_DATA_DIR"
"""The one place offline users name their local data root (holding glue/<Task>/*.tsv and custom sets)."""

GIVEN_PATHS_ENV = "TOP_GIVEN_PATHS"

# Environment variables holding a directory the stages read: the data root and the Hugging Face caches (a
# relative cache directory would otherwise be a new, empty cache in every run's clone).
PATH_ENV_VARS = (DATA_DIR_ENV, "HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE")

# Params keys whose value is a path on this machine: the data root, and the backbone when it names a local
# directory rather than a hub model.
PATH_PARAMS = ("data.data_dir", "model.backbone")


def absolute(value: str, base: Path) -> Path:
    """``value`` ($VARS and ~ expanded) as an absolute path; a relative one is taken relative to ``base``."""
    return (base / Path(os.path.expandvars(value)).expanduser()).resolve()


def recorded_paths(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The recorded forms in which the user gave paths that were made absolute (absolute path -> as given)."""
    try:
        recorded = json.loads(env.get(GIVEN_PATHS_ENV) or "{}")
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in recorded.items()} if isinstance(recorded, dict) else {}


def with_given(env: Mapping[str, str], given: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` whose ``$TOP_GIVEN_PATHS`` also records ``given``; forms recorded earlier win."""
    env = dict(env)
    merged = dict(given) | recorded_paths(env)
    if merged:
        env[GIVEN_PATHS_ENV] = json.dumps(merged, sort_keys=True)
    return env


def absolute_env(env: Mapping[str, str], base: Path) -> dict[str, str]:
    """A copy of ``env`` whose path variables (``PATH_ENV_VARS``) are absolute, relative ones (~ and $VARS
    included) taken relative to ``base``; each one changed is recorded in ``$TOP_GIVEN_PATHS`` as it was."""
    env = dict(env)
    given = {}
    for name in PATH_ENV_VARS:
        value = env.get(name)
        if value and not Path(value).is_absolute():
            resolved = str(absolute(value, base))
            if resolved != value:
                env[name] = resolved
                given[resolved] = value
    return with_given(env, given)


def absolute_params(values: Mapping[str, Any], base: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Dotted params (``{"data.data_dir": "../data"}``) with their local paths made absolute relative to ``base``,
    and the forms changed (absolute path -> as given). Other keys, null values, absolute paths and hub model
    names pass as they are; a backbone is a local path when it starts with '.' or '~' or exists under ``base``
    (as the stages decide it)."""
    values = dict(values)
    given = {}
    for key in PATH_PARAMS:
        value = values.get(key)
        if not isinstance(value, str) or not value.strip() or Path(value).is_absolute():
            continue
        if key == "model.backbone" and not (value.startswith((".", "~")) or (base / value).exists()):
            continue
        resolved = str(absolute(value, base))
        if resolved != value:
            values[key] = resolved
            given[resolved] = value
    return values, given


def as_given(value: str, resolved: Path, env: Mapping[str, str] = os.environ) -> str:
    """How the user gave the path ``value`` that resolved to ``resolved``: ``value`` itself, unless it is the
    absolute path an earlier step recorded a relative form of."""
    return value if value != str(resolved) else recorded_paths(env).get(str(resolved), value)


def naming(value: str, resolved: Path, origin: str, env: Mapping[str, str] = os.environ) -> str:
    """``resolved`` named as given and as resolved when they differ: "../data (from $TOP_DATA_DIR, resolved to
    /home/u/data)", else "/home/u/data (from $TOP_DATA_DIR)"."""
    given = as_given(value, resolved, env)
    if given == str(resolved):
        return f"{resolved} (from {origin})"
    return f"{given} (from {origin}, resolved to {resolved})"
