"""Whole training states on disk, so that a killed run resumes where it stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from top.atomic import atomic_file


def save_training_state(path: Path, modules: dict[str, Any], state: dict[str, Any]) -> None:
    """Write every module's state_dict, ``state`` and the RNG to a temporary sibling, then rename it into
    place: a kill never leaves half a checkpoint."""
    payload = {name: module.state_dict() for name, module in modules.items()}
    payload |= {"state": state, "rng": torch.get_rng_state()}
    with atomic_file(path) as staging:
        torch.save(payload, staging)


def restore_training_state(path: Path, modules: dict[str, Any]) -> dict[str, Any]:
    """Load what ``save_training_state`` wrote into ``modules`` and the RNG; return the saved ``state``."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    for name, module in modules.items():
        module.load_state_dict(payload[name])
    torch.set_rng_state(payload["rng"])
    return payload["state"]
