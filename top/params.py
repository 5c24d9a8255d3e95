"""params.yaml as typed, validated pydantic models.

``load_params``/``parse_params`` are strict: every key of params.yaml must be present, because DVC tracks the
values there, and a default hidden in code would change results without DVC noticing. Unknown keys, wrong types
and out-of-range values are rejected when a stage starts, in one ``ParamsError`` naming the dotted key(s).
Library users (notebooks, studies) get the defaults of params.yaml instead: ``PruneParams(target_macs=0.3)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from top.errors import ParamsError

T = TypeVar("T")

# Validation context flag under which every field of every model must be given (params.yaml); see _Section.
_EVERY_KEY = "every_key"


def _number_from_string(value: Any) -> Any:
    """PyYAML (YAML 1.1) reads ``5e-5`` as a string: take numeric strings for floats; leave the rest to fail."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# Strict types: "32" is not an integer, true is not a number, but an integer is a float.
Float = Annotated[float, BeforeValidator(_number_from_string)]
Text = Annotated[str, StringConstraints(pattern=r"\S")]
NonEmptyList = Annotated[list[T], Field(min_length=1)]
Device = Literal["auto", "cpu", "cuda"]
# The dtype a training stage computes in (top.device): auto is bfloat16 on CUDA, float32 on the CPU.
Precision = Literal["auto", "float32", "bfloat16"]
Share = Annotated[Float, Field(gt=0, le=1)]

# How INT8 calibration turns observed activations into ranges (INC act_algo values; top.quantize).
Int8ActivationAlgorithm = Literal["kl", "minmax"]
INT8_ACTIVATION_ALGORITHMS: tuple[str, ...] = get_args(Int8ActivationAlgorithm)

# What ToP's ranking loss compares: the student's token scores as they are, or their logarithms.
RankScores = Literal["raw", "log"]

# How the Lagrangian multipliers ascend: Adam steps of about the learning rate whatever the MACs gap (the authors'
# optimizer), or plain gradient steps, the learning rate times the gap (times its square for lambda2).
MultiplierUpdate = Literal["adam", "error_scaled"]
BudgetLengths = Literal["train", "eval"]

# The dense teacher in another runtime, timed next to the project's models (top.peers): <runtime>-<precision>.
Peer = Literal["ort-fp32", "ort-int8", "openvino-fp32", "openvino-int8"]


def _fail(message: str) -> PydanticCustomError:
    """A cross-field error whose message already names its dotted keys."""
    return PydanticCustomError("params", "{message}", {"message": message})


class _Section(BaseModel):
    """Frozen and strict; unknown keys are errors, and under ``parse_params`` so are missing ones."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        known = list(cls.model_fields)
        unknown = sorted(str(key) for key in data if key not in cls.model_fields)
        every_key = bool(info.context and info.context.get(_EVERY_KEY))
        missing = [name for name in known if name not in data] if every_key else []
        if unknown or missing:
            problems = [f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}"] if unknown else []
            problems += [f"missing key(s) {', '.join(missing)}"] if missing else []
            context = {"problems": "; ".join(problems), "unknown": unknown, "missing": missing, "known": known}
            raise PydanticCustomError("params_keys", "{problems}", context)
        return data


class CustomDatasetParams(_Section):
    """A labelled text-classification dataset given as TSV/CSV files (plain or gzipped)."""

    train: Text = "train.tsv"
    eval: Text = "eval.tsv"
    text_columns: NonEmptyList[Text] = ["text"]
    label_column: Text = "label"
    labels: NonEmptyList[Text] | None = None


class QAParams(_Section):
    """Extractive QA (SQuAD v1.1): windows over long contexts, answer decoding, and the local split."""

    max_length: int = Field(384, ge=32, le=512)
    doc_stride: int = Field(128, ge=1)
    max_answer_length: int = Field(30, ge=1)
    n_best: int = Field(20, ge=1)
    eval_share: Float = Field(0.25, gt=0, le=1)
    split_seed: int = Field(13, ge=0)


def _default_custom() -> dict[str, CustomDatasetParams]:
    return {
        "20news": CustomDatasetParams(train="20newsgroups/train.tsv", eval="20newsgroups/test.tsv"),
        "imdb": CustomDatasetParams(train="imdb/train.tsv.gz", eval="imdb/test.tsv.gz", labels=["neg", "pos"]),
    }


class DataParams(_Section):
    task: Text = "mrpc"
    data_dir: Text | None = None
    max_length: int = Field(128, ge=8, le=512)
    max_train_samples: int | None = Field(None, ge=1)
    max_eval_samples: int | None = Field(None, ge=1)
    seed: int = Field(42, ge=0)
    custom: dict[Text, CustomDatasetParams] = Field(default_factory=_default_custom)
    qa: QAParams = Field(default_factory=QAParams)

    @field_validator("custom", mode="before")
    @classmethod
    def _no_custom_datasets(cls, value: Any) -> Any:
        return {} if value is None else value


class ModelParams(_Section):
    backbone: Text = "sentence-transformers/all-MiniLM-L6-v2"


class TeacherParams(_Section):
    epochs: Float = Field(3.0, gt=0)
    learning_rate: Float = Field(1.0e-4, gt=0, le=1)
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    weight_decay: Float = Field(0.01, ge=0, le=1)
    warmup_ratio: Float = Field(0.1, ge=0, le=0.9)
    attention_dropout: Float | None = Field(None, ge=0, le=1)
    group_by_length: bool = False
    save_steps: int = Field(50, ge=1)
    seed: int = Field(42, ge=0)
    device: Device = "auto"
    precision: Precision = "auto"
    threads: int | None = Field(None, ge=1)


class PruneParams(_Section):
    """ToP: coarse-to-fine L0 token pruning with ranking distillation (see ToP.md for the authors' values)."""

    target_macs: Float = Field(0.5, gt=0, le=1)
    prune_layers: NonEmptyList[int] = [2, 3, 4, 5]
    bins: int = Field(25, ge=1)
    gates: Literal["learned", "forced_on"] = "forced_on"
    protect_question: bool = False
    # QA: rank the context by the attention it receives from the protected question, not from every live token.
    rank_by_question: bool = False
    top_k: int = Field(20, ge=1)
    distill_layers: NonEmptyList[int] = [1]
    rank_loss_weight: Float = Field(0.01, ge=0)
    rank_scores: RankScores = "raw"
    state_distill_weight: Float = Field(0.0, ge=0)
    distill_temperature: Float = Field(2.0, gt=0)
    epochs: Float = Field(3.0, gt=0)
    finetune_epochs: Float = Field(1.0, ge=0)
    warmup_ratio: Float = Field(0.5, ge=0, le=1)
    learning_rate: Float = Field(2.0e-5, gt=0, le=1)
    mask_learning_rate: Float = Field(0.1, gt=0)
    multiplier_learning_rate: Float = Field(5.0, gt=0)
    multiplier_update: MultiplierUpdate = "error_scaled"
    constraint_penalty: Float = Field(2000.0, ge=0)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    eval_steps: int = Field(50, ge=1)
    macs_tolerance: Float = Field(0.01, ge=0, le=1)
    budget_lengths: BudgetLengths = "train"
    cache_teacher_outputs: bool = True
    seed: int = Field(42, ge=0)
    device: Device = "auto"
    precision: Precision = "auto"
    threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _question_ranks(self) -> PruneParams:
        if self.rank_by_question and not self.protect_question:
            raise _fail(
                "prune.rank_by_question is true but prune.protect_question is false: "
                "the question can rank the context only if it is kept"
            )
        return self


class QuantizeParams(_Section):
    """Static INT8 (Intel Neural Compressor) of the teacher and the ToP model; optional."""

    enabled: bool = True
    calibration_batches: int = Field(8, ge=0)
    calibration_batch_size: int = Field(32, ge=1)
    activation_algorithm: Int8ActivationAlgorithm = "kl"
    smoothing_alpha: Float | None = Field(None, ge=0, le=1)
    eval_batch_size: int = Field(64, ge=1)
    seed: int = Field(42, ge=0)

    @model_validator(mode="after")
    def _calibrated(self) -> QuantizeParams:
        if self.enabled and self.calibration_batches == 0:
            raise _fail(
                "quantize.enabled is true but quantize.calibration_batches is 0: static INT8 needs calibration data"
            )
        return self


class BenchmarkParams(_Section):
    """CPU latency and throughput of every model the pipeline produced."""

    threads: int = Field(2, ge=1)
    batch_sizes: NonEmptyList[Annotated[int, Field(ge=1)]] = [1, 8, 32]
    # Dev examples drawn (seeded) for the timed batches.
    examples: int = Field(256, ge=1)
    warmup: int = Field(3, ge=0)
    repetitions: int = Field(20, ge=1)
    # Timed calls are split into this many rounds that interleave the models (at least one call per round).
    rounds: int = Field(5, ge=1)
    compile: bool = True
    # The dense teacher exported to other runtimes and timed in the same rounds; [] times none.
    peers: list[Peer] = ["ort-fp32", "ort-int8", "openvino-fp32", "openvino-int8"]
    # The ToP model also exported as one ONNX graph and timed in ONNX Runtime, FP32 and dynamic INT8.
    top_ort: bool = True
    seed: int = Field(42, ge=0)

    @model_validator(mode="after")
    def _rounds_fit(self) -> BenchmarkParams:
        if self.rounds > self.repetitions:
            raise _fail(
                f"benchmark.rounds ({self.rounds}) must not exceed benchmark.repetitions ({self.repetitions}): "
                "every round times at least one call"
            )
        if len(set(self.peers)) != len(self.peers):
            raise _fail(f"benchmark.peers lists a peer twice: {self.peers}")
        return self


class FlexParams(_Section):
    """Flexible BERT: width x depth supernet with grafting, width gates and off-ramps (see FlexBERT.md)."""

    # The stages flex and flex_benchmark run only when true; otherwise they write outputs saying they were skipped.
    enabled: bool = False
    max_train_samples: int | None = Field(1024, ge=1)
    importance_samples: int = Field(256, ge=1)
    widths: NonEmptyList[Share] = [1.0, 0.75, 0.5, 0.25]
    depths: NonEmptyList[Share] = [1.0, 0.75, 0.5]
    # How whatever reads a state before the last layer (a prefix's head, an off-ramp, a width gate) pools it.
    prefix_pooling: Literal["cls", "mean"] = "mean"
    width_epochs: Float = Field(2.0, gt=0)
    depth_epochs: Float = Field(3.0, gt=0)
    width_learning_rate: Float = Field(5.0e-5, gt=0, le=1)
    depth_learning_rate: Float = Field(7.0e-5, gt=0, le=1)
    # 0: no final fine-tuning of the subnets on the labels.
    finetune_epochs: Float = Field(1.0, ge=0)
    finetune_learning_rate: Float = Field(5.0e-5, gt=0, le=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    width_hidden_weight: Float = Field(0.1, ge=0)
    depth_hidden_weight: Float = Field(1.0, ge=0)
    grafting: bool = True
    graft_alpha: Float = Field(0.1, ge=0, le=1)
    grafts_per_epoch: int = Field(3, ge=1)
    compare_grafting: bool = True
    gate_widths: NonEmptyList[Share] = [0.25, 0.5, 0.75, 1.0]
    gate_epochs: int = Field(8, ge=1)
    gate_learning_rate: Float = Field(2.0e-4, gt=0, le=1)
    width_map_grid: NonEmptyList[Share] = [0.25, 0.5, 0.583, 0.75, 1.0]
    thresholds: NonEmptyList[Float] = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7]
    # Below 1: the rest of dev is where the chosen trade-off is reported.
    select_share: Float = Field(0.5, gt=0, lt=1)
    tradeoff_tolerance: Float = Field(0.005, ge=0, le=1)
    save_steps: int = Field(50, ge=1)
    seed: int = Field(42, ge=0)
    device: Device = "auto"
    precision: Precision = "auto"
    threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _grids(self) -> FlexParams:
        if 1.0 not in self.widths or 1.0 not in self.depths:
            raise _fail("flex.widths and flex.depths must include 1.0 (the full model)")
        if any(value < 0 for value in self.thresholds):
            raise _fail(f"flex.thresholds must be non-negative entropies, got {self.thresholds}")
        return self


class Params(_Section):
    data: DataParams = Field(default_factory=DataParams)
    model: ModelParams = Field(default_factory=ModelParams)
    teacher: TeacherParams = Field(default_factory=TeacherParams)
    prune: PruneParams = Field(default_factory=PruneParams)
    quantize: QuantizeParams = Field(default_factory=QuantizeParams)
    benchmark: BenchmarkParams = Field(default_factory=BenchmarkParams)
    flex: FlexParams = Field(default_factory=FlexParams)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raise ``ParamsError`` naming the offending key(s)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    return parse_params(raw)


def parse_params(raw: Any) -> Params:
    """Validate an already-parsed params mapping in which every key must be set (tests and ``load_params``)."""
    try:
        return Params.model_validate(raw, context={_EVERY_KEY: True})
    except ValidationError as exc:
        raise ParamsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    """One message for every error pydantic found, each naming its dotted key."""
    unknown: list[str] = []
    missing: list[str] = []
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        loc, kind, ctx = error["loc"], error["type"], error.get("ctx") or {}
        if kind == "params_keys":
            missing += [_key((*loc, name)) for name in ctx["missing"]]
            if ctx["unknown"]:
                names = ", ".join(_key((*loc, name)) for name in ctx["unknown"])
                lines.append(f"unknown key(s) {names}; known keys of {_key(loc)}: {', '.join(ctx['known'])}")
        elif kind == "extra_forbidden":
            unknown.append(_key(loc))
        else:
            lines.append(_message(_key(loc), kind, ctx, error["input"], error["msg"]))
    if unknown:
        lines.insert(0, f"unknown key(s) {', '.join(unknown)}")
    if missing:
        lines.insert(0, f"missing key(s) {', '.join(missing)} in params.yaml (every key must be set explicitly)")
    return "; ".join(lines)


def _message(key: str, kind: str, ctx: dict[str, Any], value: Any, fallback: str) -> str:
    bounds = {
        "greater_than": ("greater than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    if kind in bounds:
        words, name = bounds[kind]
        return f"{key} must be {words} {ctx[name]:g}; got {value!r}"
    if kind == "literal_error":
        choices = ctx["expected"].replace("'", "").replace(" or ", ", ")
        return f"{key} must be one of {choices}; got {value!r}"
    if kind == "model_type":
        return f"{key} must be a mapping of keys to values, got {type(value).__name__}"
    described = {
        "int_type": "must be an integer",
        "float_type": "must be a number",
        "finite_number": "must be finite",
        "bool_type": "must be true or false",
        "string_type": "must be a non-empty string",
        "string_pattern_mismatch": "must be a non-empty string",
        "list_type": "must be a non-empty list",
        "too_short": "must be a non-empty list",
        "dict_type": "must be a mapping",
    }
    if kind in described:
        return f"{key} {described[kind]}, got {value!r}"
    if kind == "params":
        return fallback
    return f"{key}: {fallback}"


def _key(loc: tuple[int | str, ...]) -> str:
    """("data", "custom", "imdb", "labels", 0) -> data.custom.imdb.labels[0]; () -> params.yaml."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return key or "params.yaml"
