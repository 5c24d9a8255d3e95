"""params.yaml, loaded into typed, validated dataclasses.

Every key must be present: DVC tracks the values in params.yaml, so a default hidden in code would be a
value that changes results without DVC noticing. Unknown keys, wrong types and out-of-range values are
rejected when a stage starts, with the dotted key in the message.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from top.errors import ParamsError

T = TypeVar("T")


def _check(
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    exclusive_minimum: bool = False,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """Attach range or choice constraints to a dataclass field."""
    return field(metadata={"min": minimum, "max": maximum, "exclusive_min": exclusive_minimum, "choices": choices})


@dataclass(frozen=True)
class CustomDatasetParams:
    """A labelled text-classification dataset given as TSV/CSV files (plain or gzipped)."""

    train: str
    eval: str
    text_columns: list[str]
    label_column: str
    labels: list[str] | None


@dataclass(frozen=True)
class QAParams:
    """Extractive QA (SQuAD v1.1): windows over long contexts, answer decoding, and the local split."""

    max_length: int = _check(32, 512)
    doc_stride: int = _check(1)
    max_answer_length: int = _check(1)
    n_best: int = _check(1)
    eval_share: float = _check(0, 1, exclusive_minimum=True)
    split_seed: int = _check(0)


@dataclass(frozen=True)
class DataParams:
    task: str
    data_dir: str | None
    max_length: int = _check(8, 512)
    max_train_samples: int | None = _check(1)
    max_eval_samples: int | None = _check(1)
    seed: int = _check(0)
    custom: dict[str, CustomDatasetParams]
    qa: QAParams


@dataclass(frozen=True)
class ModelParams:
    backbone: str


@dataclass(frozen=True)
class TeacherParams:
    epochs: float = _check(0, exclusive_minimum=True)
    learning_rate: float = _check(0, 1, exclusive_minimum=True)
    batch_size: int = _check(1)
    eval_batch_size: int = _check(1)
    weight_decay: float = _check(0, 1)
    warmup_ratio: float = _check(0, 0.9)
    attention_dropout: float | None = _check(0, 1)
    group_by_length: bool
    save_steps: int = _check(1)
    seed: int = _check(0)
    device: str = _check(choices=("auto", "cpu", "cuda"))
    threads: int | None = _check(1)


@dataclass(frozen=True)
class PruneParams:
    """ToP: coarse-to-fine L0 token pruning with ranking distillation (see ToP.md for the authors' values)."""

    target_macs: float = _check(0, 1, exclusive_minimum=True)
    prune_layers: list[int]
    bins: int = _check(1)
    gates: str = _check(choices=("learned", "forced_on"))
    protect_question: bool
    top_k: int = _check(1)
    distill_layers: list[int]
    rank_loss_weight: float = _check(0)
    state_distill_weight: float = _check(0)
    distill_temperature: float = _check(0, exclusive_minimum=True)
    epochs: float = _check(0, exclusive_minimum=True)
    finetune_epochs: float = _check(0)
    warmup_ratio: float = _check(0, 1)
    learning_rate: float = _check(0, 1, exclusive_minimum=True)
    mask_learning_rate: float = _check(0, exclusive_minimum=True)
    batch_size: int = _check(1)
    eval_batch_size: int = _check(1)
    eval_steps: int = _check(1)
    macs_tolerance: float = _check(0, 1)
    seed: int = _check(0)
    device: str = _check(choices=("auto", "cpu", "cuda"))
    threads: int | None = _check(1)


# How INT8 calibration turns observed activations into ranges (INC act_algo values; top.quantize).
INT8_ACTIVATION_ALGORITHMS = ("kl", "minmax")


@dataclass(frozen=True)
class QuantizeParams:
    """Static INT8 (Intel Neural Compressor) of the teacher and the ToP model; optional."""

    enabled: bool
    calibration_batches: int = _check(0)
    calibration_batch_size: int = _check(1)
    activation_algorithm: str = _check(choices=INT8_ACTIVATION_ALGORITHMS)
    smoothing_alpha: float | None = _check(0, 1)
    eval_batch_size: int = _check(1)
    seed: int = _check(0)

    def __post_init__(self) -> None:
        if self.enabled and self.calibration_batches == 0:
            raise ParamsError(
                "quantize.enabled is true but quantize.calibration_batches is 0: static INT8 needs calibration data"
            )


@dataclass(frozen=True)
class BenchmarkParams:
    """CPU latency and throughput of every model the pipeline produced."""

    threads: int = _check(1)
    batch_sizes: list[int]
    # Dev examples drawn (seeded) for the timed batches.
    examples: int = _check(1)
    warmup: int = _check(0)
    repetitions: int = _check(1)
    # Timed calls are split into this many rounds that interleave the models (at least one call per round).
    rounds: int = _check(1)
    compile: bool
    seed: int = _check(0)

    def __post_init__(self) -> None:
        if any(size < 1 for size in self.batch_sizes):
            raise ParamsError(f"benchmark.batch_sizes must be positive, got {self.batch_sizes}")
        if self.rounds > self.repetitions:
            raise ParamsError(
                f"benchmark.rounds ({self.rounds}) must not exceed benchmark.repetitions ({self.repetitions}): "
                "every round times at least one call"
            )


@dataclass(frozen=True)
class FlexParams:
    """Flexible BERT: width x depth supernet with grafting, width gates and off-ramps (see FlexBERT.md)."""

    max_train_samples: int | None = _check(1)
    importance_samples: int = _check(1)
    widths: list[float]
    depths: list[float]
    width_epochs: float = _check(0, exclusive_minimum=True)
    depth_epochs: float = _check(0, exclusive_minimum=True)
    width_learning_rate: float = _check(0, 1, exclusive_minimum=True)
    depth_learning_rate: float = _check(0, 1, exclusive_minimum=True)
    batch_size: int = _check(1)
    eval_batch_size: int = _check(1)
    width_hidden_weight: float = _check(0)
    depth_hidden_weight: float = _check(0)
    grafting: bool
    graft_alpha: float = _check(0, 1)
    grafts_per_epoch: int = _check(1)
    compare_grafting: bool
    gate_widths: list[float]
    gate_epochs: int = _check(1)
    gate_learning_rate: float = _check(0, 1, exclusive_minimum=True)
    width_map_grid: list[float]
    thresholds: list[float]
    select_share: float = _check(0, 1, exclusive_minimum=True)
    tradeoff_tolerance: float = _check(0, 1)
    save_steps: int = _check(1)
    seed: int = _check(0)
    device: str = _check(choices=("auto", "cpu", "cuda"))
    threads: int | None = _check(1)

    def __post_init__(self) -> None:
        for key in ("widths", "depths", "gate_widths", "width_map_grid"):
            values = getattr(self, key)
            if any(not 0 < value <= 1 for value in values):
                raise ParamsError(f"flex.{key} must all be in (0, 1], got {values}")
        if 1.0 not in self.widths or 1.0 not in self.depths:
            raise ParamsError("flex.widths and flex.depths must include 1.0 (the full model)")
        if any(value < 0 for value in self.thresholds):
            raise ParamsError(f"flex.thresholds must be non-negative entropies, got {self.thresholds}")
        if self.select_share >= 1:
            raise ParamsError("flex.select_share must leave part of dev for reporting (below 1)")


@dataclass(frozen=True)
class Params:
    data: DataParams
    model: ModelParams
    teacher: TeacherParams
    prune: PruneParams
    quantize: QuantizeParams
    benchmark: BenchmarkParams
    flex: FlexParams


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raise ``ParamsError`` naming the offending key."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    return parse_params(raw)


def parse_params(raw: Any) -> Params:
    """Validate an already-parsed params mapping (used by tests and by ``load_params``)."""
    return _parse_dataclass(Params, raw, "")


def _parse_dataclass(cls: type[T], raw: Any, where: str) -> T:
    label = where or "params.yaml"
    if not isinstance(raw, dict):
        raise ParamsError(f"{label} must be a mapping of keys to values, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        names = ", ".join(_join(where, key) for key in unknown)
        raise ParamsError(f"unknown key(s) {names}; known keys of {label}: {', '.join(fields)}")
    missing = [name for name in fields if name not in raw]
    if missing:
        names = ", ".join(_join(where, key) for key in missing)
        raise ParamsError(f"missing key(s) {names} in params.yaml (every key must be set explicitly)")
    values = {}
    for name, spec in fields.items():
        key = _join(where, name)
        value = _parse_value(hints[name], raw[name], key)
        _check_constraints(spec.metadata, value, key)
        values[name] = value
    return cls(**values)


def _parse_value(annotation: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _parse_value(inner, value, key)
    if dataclasses.is_dataclass(annotation):
        return _parse_dataclass(annotation, value, key)
    if origin is list:
        if not isinstance(value, list) or not value:
            raise ParamsError(f"{key} must be a non-empty list, got {value!r}")
        return [_parse_value(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ParamsError(f"{key} must be a mapping, got {value!r}")
        return {str(name): _parse_value(args[1], item, f"{key}.{name}") for name, item in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key} must be an integer, got {value!r}")
        return value
    if annotation is float:
        return _parse_float(value, key)
    if annotation is str:
        if not isinstance(value, str) or not value.strip():
            raise ParamsError(f"{key} must be a non-empty string, got {value!r}")
        return value
    raise TypeError(f"unsupported params annotation {annotation!r} for {key}")


def _parse_float(value: Any, key: str) -> float:
    """Accept ints and numeric strings: YAML 1.1 (PyYAML) reads ``5e-5`` as a string."""
    if isinstance(value, bool):
        raise ParamsError(f"{key} must be a number, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ParamsError(f"{key} must be a number, got {value!r}") from None
    else:
        raise ParamsError(f"{key} must be a number, got {value!r}")
    if not math.isfinite(number):
        raise ParamsError(f"{key} must be finite, got {value!r}")
    return number


def _check_constraints(metadata: Any, value: Any, key: str) -> None:
    if value is None or not metadata:
        return
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        raise ParamsError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
    minimum, maximum = metadata.get("min"), metadata.get("max")
    if minimum is not None:
        too_small = value <= minimum if metadata.get("exclusive_min") else value < minimum
        if too_small:
            bound = "greater than" if metadata.get("exclusive_min") else "at least"
            raise ParamsError(f"{key} must be {bound} {minimum}; got {value!r}")
    if maximum is not None and value > maximum:
        raise ParamsError(f"{key} must be at most {maximum}; got {value!r}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
