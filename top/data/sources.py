"""Loading a task's splits, from local files or the Hugging Face hub, into one internal form.

The internal form is a ``datasets.DatasetDict`` with a ``train`` split and the task's evaluation splits
(``eval``, plus ``eval_mismatched`` for MNLI), each with columns ``text_a``, ``text_b`` (pairs only) and
``label`` (class index, or a float for regression).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import datasets

from top.data.paths import DATA_DIR_ENV, absolute, naming
from top.data.tables import read_rows
from top.data.tasks import TaskSpec
from top.errors import DataError

HUB_GLUE_DATASET = "nyu-mll/glue"


def resolve_data_dir(configured: str | None) -> Path | None:
    """``data.data_dir`` from params, else $TOP_DATA_DIR, else None (GLUE then comes from the hub).

    A relative path is taken relative to the stage's working directory (the project, under `dvc repro`); the
    orchestration hands stages absolute paths. A missing directory is named as given and as resolved.
    """
    value = configured or os.environ.get(DATA_DIR_ENV) or None
    if value is None:
        return None
    path = absolute(value, Path.cwd())
    if not path.is_dir():
        origin = "data.data_dir" if configured else f"${DATA_DIR_ENV}"
        raise DataError(f"data directory {naming(value, path, origin)} does not exist")
    return path


def load_task(spec: TaskSpec, data_dir: Path | None) -> tuple[TaskSpec, datasets.DatasetDict, dict[str, Any]]:
    """Return the (label-complete) task spec, its splits in internal form, and a description of the source."""
    if spec.train_path is not None:
        return _load_custom(spec, data_dir)
    if data_dir is not None:
        return _load_local_glue(spec, data_dir)
    return spec, _load_hub_glue(spec), {"kind": "hub", "dataset": HUB_GLUE_DATASET, "config": spec.hub_config}


def read_split(spec: TaskSpec, path: Path) -> dict[str, list[Any]]:
    """Read one split file of ``spec`` into internal columns, checking every label."""
    columns: dict[str, list[Any]] = {"text_a": [], "label": []}
    if spec.is_pair:
        columns["text_b"] = []
    label_index = None if spec.raw_labels is None else {raw: i for i, raw in enumerate(spec.raw_labels)}
    for row in read_rows(path, has_header=spec.has_header):
        try:
            texts = [row.fields[name] for name in spec.text_columns]
            raw_label = row.fields[spec.label_column].strip()
        except KeyError as exc:
            raise DataError(
                f"{path}:1: no column {exc.args[0]!r} in header {sorted(row.fields)} (task {spec.name})"
            ) from None
        columns["text_a"].append(texts[0])
        if spec.is_pair:
            columns["text_b"].append(texts[1])
        columns["label"].append(_label(spec, label_index, raw_label, path, row.line))
    if not columns["label"]:
        raise DataError(f"{path}: empty split (no data rows) for task {spec.name}")
    return columns


def _label(spec: TaskSpec, label_index: dict[str, int] | None, raw: str, path: Path, line: int) -> int | float:
    if label_index is None:
        try:
            return float(raw)
        except ValueError:
            raise DataError(f"{path}:{line}: label {raw!r} is not a number (task {spec.name})") from None
    if raw not in label_index:
        expected = ", ".join(label_index)
        raise DataError(f"{path}:{line}: unknown label {raw!r} for task {spec.name} (expected one of: {expected})")
    return label_index[raw]


def _load_local_glue(spec: TaskSpec, data_dir: Path) -> tuple[TaskSpec, datasets.DatasetDict, dict[str, Any]]:
    assert spec.glue_dir_name is not None
    task_dir = data_dir / "glue" / spec.glue_dir_name
    if not task_dir.is_dir():
        raise DataError(f"GLUE task directory not found: {task_dir}")
    files = {"train": task_dir / "train.tsv"} | {split.name: task_dir / split.tsv_file for split in spec.eval_splits}
    return spec, *_read_files(spec, files)


def _load_custom(spec: TaskSpec, data_dir: Path | None) -> tuple[TaskSpec, datasets.DatasetDict, dict[str, Any]]:
    assert spec.train_path is not None and spec.eval_path is not None
    files = {"train": _custom_path(spec.train_path, data_dir), "eval": _custom_path(spec.eval_path, data_dir)}
    if spec.infer_labels:
        labels = _distinct_labels(spec, files["train"])
        spec = dataclasses.replace(spec, raw_labels=labels, label_names=labels, infer_labels=False)
    return spec, *_read_files(spec, files)


def _read_files(spec: TaskSpec, files: dict[str, Path]) -> tuple[datasets.DatasetDict, dict[str, Any]]:
    splits = {name: datasets.Dataset.from_dict(read_split(spec, path)) for name, path in files.items()}
    return datasets.DatasetDict(splits), {"kind": "local", "files": describe_files(files)}


def _custom_path(declared: str, data_dir: Path | None) -> Path:
    path = Path(os.path.expandvars(declared)).expanduser()
    if not path.is_absolute() and data_dir is not None:
        path = data_dir / path
    return path.resolve()


def _distinct_labels(spec: TaskSpec, path: Path) -> tuple[str, ...]:
    labels = sorted({row.fields.get(spec.label_column, "").strip() for row in read_rows(path)})
    if not labels:
        raise DataError(f"{path}: empty split (no data rows) for task {spec.name}")
    if "" in labels:
        raise DataError(f"{path}: column {spec.label_column!r} is missing or has empty labels (task {spec.name})")
    return tuple(labels)


def describe_files(files: dict[str, Path]) -> dict[str, dict[str, str]]:
    """Record each source file's path and sha256, so a prepared dataset says exactly what it came from."""
    described = {}
    for split, path in files.items():
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        described[split] = {"path": str(path), "sha256": digest.hexdigest()}
    return described


def _load_hub_glue(spec: TaskSpec) -> datasets.DatasetDict:
    try:
        hub = datasets.load_dataset(HUB_GLUE_DATASET, spec.hub_config)
    except Exception as exc:  # network, auth or cache errors all mean the same thing to the user
        raise DataError(
            f"could not load GLUE task {spec.name} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            f"Offline, set ${DATA_DIR_ENV} (or data.data_dir) to a directory holding glue/{spec.glue_dir_name}/"
        ) from None
    return from_hub_layout(spec, hub)


def from_hub_layout(spec: TaskSpec, hub: datasets.DatasetDict) -> datasets.DatasetDict:
    """Rename the hub's columns to the internal ones; the hub already stores labels as class indices."""
    splits = {"train": "train"} | {split.name: split.hub_split for split in spec.eval_splits}
    converted = {}
    for name, hub_split in splits.items():
        if hub_split not in hub:
            raise DataError(f"hub dataset for {spec.name} has no split {hub_split!r} (has {sorted(hub)})")
        part = hub[hub_split]
        columns: dict[str, list[Any]] = {"text_a": part[spec.hub_text_columns[0]], "label": part["label"]}
        if spec.is_pair:
            columns["text_b"] = part[spec.hub_text_columns[1]]
        if not spec.is_regression and any(label < 0 for label in columns["label"]):
            raise DataError(f"hub split {hub_split!r} of {spec.name} has unlabelled rows (label -1)")
        if not columns["label"]:
            raise DataError(f"hub split {hub_split!r} of {spec.name} is empty")
        converted[name] = datasets.Dataset.from_dict(columns)
    return datasets.DatasetDict(converted)
