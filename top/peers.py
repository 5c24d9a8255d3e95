"""Models in the runtimes a CPU user deploys: the dense teacher as the benchmark's peers, and the ToP model itself.

A model is exported once to ONNX (torch.onnx's torch.export-based exporter, dynamic batch and sequence axes; a
ToP model as one graph with its token ranking, top-k and gather inside, ``top.pruning.onnx_graph``) and then made
FP32 or INT8 with its runtime's own tools: ONNX Runtime
(``onnxruntime.quantization`` dynamic INT8 with per-channel weights: no calibration data, and each activation is
quantized on its own range at every call) and OpenVINO (``openvino.convert_model``, INT8 by NNCF's transformer
recipe calibrated on the same batches as the PyTorch INT8 model). Each is called like a Hugging Face classifier
on the benchmark's batches and returns its logits, so it is timed and scored like the project's own models.

Deploying the ToP model in ONNX Runtime: ``OrtModel("artifacts/onnx/top-int8.onnx", threads=2)(**batch).logits``.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, get_args

import datasets
import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedTokenizerBase
from transformers.modeling_outputs import SequenceClassifierOutput

from top.atomic import atomic_file
from top.backbone import load_float32
from top.cpu import int8_weights_saturate
from top.data.batches import MODEL_INPUTS, batch_loader, model_inputs
from top.data.tasks import TaskSpec
from top.errors import ModelBuildError, one_line
from top.metrics import compute_metrics, predictions_from_logits
from top.params import Peer
from top.pruning.model import TokenPruningBertForSequenceClassification
from top.pruning.onnx_graph import PrunedLogitsGraph

log = logging.getLogger(__name__)

PEERS: tuple[str, ...] = get_args(Peer)
# Runtime part of a peer's name -> the package that provides it (named in an install error).
RUNTIME_PACKAGES = {"ort": "onnxruntime", "openvino": "openvino"}
# Shape of the example the export traces: both axes are then dynamic (torch.export specializes sizes 0 and 1,
# and two input axes of one size would be taken for the same dimension).
EXPORT_EXAMPLE_SHAPE = (3, 11)


def peer_parts(peer: str) -> tuple[str, str]:
    """(precision, runtime) of a peer such as ``ort-int8``; the benchmark names it ``dense-<precision>-<runtime>``."""
    runtime, precision = peer.split("-")
    return precision, runtime


class _Logits(nn.Module):
    """A sequence classifier as a graph of the three BERT inputs to its logits (the exported signature)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def onnx_file(family: str, precision: str) -> str:
    """File name of a model family's (``dense``, ``top``) FP32 export or ONNX Runtime INT8 model."""
    return f"{family}-{precision}.onnx"


def logits_graph(model_dir: str | Path) -> nn.Module:
    """The saved sequence classifier as a module of the three inputs to its logits: Hugging Face's own forward
    for a dense model, the one-graph physical forward for a ToP model (prune layers in its config)."""
    if getattr(AutoConfig.from_pretrained(str(model_dir)), "prune_layers", None):
        return PrunedLogitsGraph(load_float32(TokenPruningBertForSequenceClassification, model_dir))
    return _Logits(load_float32(AutoModelForSequenceClassification, model_dir))


def export_onnx(model_dir: str | Path, path: str | Path) -> Path:
    """The sequence classifier saved in ``model_dir`` as one ONNX graph with dynamic batch and sequence axes."""
    from torch.export import Dim

    module = logits_graph(model_dir).eval()
    config = AutoConfig.from_pretrained(str(model_dir))
    batch, tokens = EXPORT_EXAMPLE_SHAPE
    example = (
        torch.randint(0, config.vocab_size, (batch, tokens)),
        torch.ones(batch, tokens, dtype=torch.long),
        torch.zeros(batch, tokens, dtype=torch.long),
    )
    example[1][-1, tokens // 2 :] = 0  # a padded row, as real batches have
    dims = {0: Dim("batch"), 1: Dim("sequence", max=config.max_position_embeddings)}
    path = Path(path)
    with torch.no_grad(), warnings.catch_warnings(), atomic_file(path) as staging:
        # The exporter notes that the three inputs share their axes' names (they do, by design), and torch.export
        # trips over a deprecation inside torch itself.
        warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`", category=FutureWarning)
        torch.onnx.export(
            module,
            example,
            str(staging),
            input_names=list(MODEL_INPUTS),
            output_names=["logits"],
            dynamic_shapes={name: dims for name in MODEL_INPUTS},
            external_data=False,
            verbose=False,
        )
    return path


def _numpy_inputs(inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The three int64 arrays a peer takes; a tokenizer that gives no token types gets segment 0 throughout."""
    arrays = {name: inputs[name].numpy() for name in MODEL_INPUTS if name in inputs}
    arrays.setdefault("token_type_ids", np.zeros_like(arrays["input_ids"]))
    return {name: arrays[name].astype(np.int64, copy=False) for name in MODEL_INPUTS}


class OrtModel:
    """An ONNX Runtime session on the CPU, called like a Hugging Face sequence classifier.

    ``threads`` intra-op threads (the benchmark's count) and one inter-op thread: one request at a time. Idle
    threads sleep rather than spin, as a server running other models beside it would configure them.
    """

    def __init__(self, path: str | Path, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Without this its worker threads keep spinning after each call and take the cores from whichever model
        # the interleaved rounds time next.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.run_options: Any = None

    def __call__(self, **inputs: torch.Tensor) -> SequenceClassifierOutput:
        (logits,) = self.session.run(["logits"], _numpy_inputs(inputs), self.run_options)
        return SequenceClassifierOutput(logits=torch.from_numpy(logits))

    @contextlib.contextmanager
    def returning_memory(self) -> Iterator[None]:
        """Calls inside give their working memory back to the system at the end of each run.

        The session's arena otherwise keeps its largest call's memory for its lifetime: several GB after scoring
        batches of 64 at 512 tokens, held by every session while the next model is built and scored.
        """
        import onnxruntime

        self.run_options = onnxruntime.RunOptions()
        self.run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        try:
            yield
        finally:
            self.run_options = None


def quantize_ort(fp32_path: str | Path, int8_path: str | Path) -> Path:
    """ONNX Runtime's dynamic INT8: per-channel INT8 weights, each activation quantized per call on its own range.

    Weights get 7 bits on a CPU whose INT8 dot products saturate (``top.cpu``), ONNX Runtime's ``reduce_range``.
    """
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    with tempfile.TemporaryDirectory() as work, atomic_file(int8_path) as staging, _quiet_root_logger():
        prepared = Path(work) / "prepared.onnx"
        # ONNX Runtime's pre-processing (shape inference, graph clean-up); its symbolic shape pass does not follow
        # the torch.export graph's shapes, and ONNX's own inference covers what quantization needs.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            str(prepared),
            str(staging),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=int8_weights_saturate(),
        )
    return Path(int8_path)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantization logs a line per tensor and node on the root logger at INFO: raise it meanwhile."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


class OpenVinoModel:
    """An OpenVINO model compiled for the CPU, called like a Hugging Face sequence classifier.

    ``threads`` inference threads, one stream, latency hint, and FP32 for every operation that is not INT8 (on a
    CPU with BF16 support OpenVINO would otherwise run them in BF16, and the row would no longer say what it is).
    """

    def __init__(self, model: Any, threads: int) -> None:
        import openvino

        properties = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled = openvino.Core().compile_model(model, "CPU", properties)
        self.request = self.compiled.create_infer_request()

    def __call__(self, **inputs: torch.Tensor) -> SequenceClassifierOutput:
        logits = self.request.infer(_numpy_inputs(inputs))[self.compiled.output(0)]
        return SequenceClassifierOutput(logits=torch.from_numpy(np.array(logits)))

    @contextlib.contextmanager
    def returning_memory(self) -> Iterator[None]:
        """The calls inside run as usual; afterwards the compiled model frees the intermediate buffers it keeps
        for its largest input (several GB after scoring batches of 64 at 512 tokens)."""
        try:
            yield
        finally:
            self.compiled.release_memory()


def openvino_model(onnx_path: str | Path, calibration: list[dict[str, torch.Tensor]] | None = None) -> Any:
    """The ONNX graph converted by OpenVINO; INT8 by NNCF's transformer recipe if ``calibration`` batches are given."""
    import openvino

    model = openvino.convert_model(str(onnx_path))
    if calibration is None:
        return model
    import nncf

    arrays = [_numpy_inputs(batch) for batch in calibration]
    return nncf.quantize(model, nncf.Dataset(arrays), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(arrays))


def build_peers(
    names: Iterable[str],
    model_dir: str | Path,
    work_dir: str | Path,
    threads: int,
    calibration: Callable[[], list[dict[str, torch.Tensor]]],
    family: str = "dense",
) -> dict[str, OrtModel | OpenVinoModel]:
    """The sequence classifier in ``model_dir`` in every runtime and precision in ``names`` (e.g. ``ort-int8``).

    The ONNX export and ONNX Runtime INT8 model are written under ``work_dir`` (``onnx_file(family, ...)``);
    ``calibration`` gives the batches that calibrate a static INT8 model. A model that cannot be built (a runtime
    not installed, an export or quantization that fails) is a one-line ``ModelBuildError`` naming the variant
    (``<family>-<precision>-<runtime>``) and the cause.
    """
    work_dir = Path(work_dir)
    onnx_path = work_dir / onnx_file(family, "fp32")
    exported = False  # exported afresh by the first peer: a file left by an earlier run may be another model's
    peers: dict[str, OrtModel | OpenVinoModel] = {}
    for name in names:
        if name not in PEERS:
            raise ModelBuildError(f"unknown benchmark peer {name!r}; known peers: {', '.join(PEERS)}")
        precision, runtime = peer_parts(name)
        variant = f"benchmark {family}-{precision}-{runtime}"
        step = "ONNX export"
        try:
            if not exported:
                export_onnx(model_dir, onnx_path)
                exported = True
            step = f"{precision.upper()} build"
            if runtime == "ort":
                int8_path = work_dir / onnx_file(family, "int8")
                path = onnx_path if precision == "fp32" else quantize_ort(onnx_path, int8_path)
                peers[name] = OrtModel(path, threads)
            else:
                batches = calibration() if precision == "int8" else None
                peers[name] = OpenVinoModel(openvino_model(onnx_path, batches), threads)
        except ImportError as exc:
            raise ModelBuildError(
                f"{variant}: {RUNTIME_PACKAGES[runtime]} or a package it needs is not installed "
                f"(pip install -r requirements.txt): {one_line(exc)}"
            ) from None
        except Exception as exc:  # any failure inside a third-party build is reported as one line
            raise ModelBuildError(f"{variant}: {step} failed: {one_line(exc)}") from None
        log.info("built %s", variant)
    return peers


@torch.no_grad()
def evaluate_peer(
    model: Callable[..., SequenceClassifierOutput],
    spec: TaskSpec,
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
) -> tuple[dict[str, float], np.ndarray]:
    """Every official metric of ``spec`` for a classifier (or regressor) called on ``split`` in dynamic-padded
    batches, and its predictions in split order: the same inputs and metric code as the evaluation of the
    project's own models."""
    if spec.is_qa:
        raise ValueError("peers are sequence classifiers; a QA task has no peer to evaluate")
    logits, labels = [], []
    runtime = isinstance(model, OrtModel | OpenVinoModel)
    with model.returning_memory() if runtime else contextlib.nullcontext():
        for batch in batch_loader(split, tokenizer, batch_size, shuffle=False, seed=0):
            logits.append(model(**model_inputs(batch)).logits.float().numpy())
            labels.append(batch["labels"].numpy())
    predictions = predictions_from_logits(spec, np.concatenate(logits))
    return compute_metrics(spec, predictions, np.concatenate(labels)), predictions
