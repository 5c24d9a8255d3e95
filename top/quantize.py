"""Static post-training INT8 with Intel Neural Compressor (3.x PT2E API) that stacks with physical token pruning.

A token-pruned forward has data-dependent shapes (each example keeps its own count), so it cannot be exported
as one graph. Instead every layer's two dense blocks, self-attention (projections, scores, softmax, output
projection, LayerNorm) and feed-forward, are exported with dynamic batch and sequence dimensions and quantized
one by one; the token ranking, selection and gather between them stay in eager FP32 code, unchanged. The dense
model is the same thing with no prune layers. Calibration runs real training batches through the model itself,
so every block is calibrated on the (pruned) activations it will see at inference.

The embeddings, pooler and classifier stay FP32: they are a few percent of the MACs.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import datasets
import torch
from torch import nn
from torch.export import Dim
from transformers import PreTrainedTokenizerBase

from top.atomic import atomic_directory
from top.data.batches import batch_loader, model_inputs
from top.errors import ModelDirError
from top.params import INT8_ACTIVATION_ALGORITHMS, QuantizeParams
from top.pruning.model import (
    ScoreKind,
    TokenPruningBertForQuestionAnswering,
    TokenPruningBertForSequenceClassification,
    TokenPruningBertPreTrainedModel,
    attention_with_scores,
    feed_forward,
    fused_self_attention,
    pruning_model_class,
)
from top.smooth_quant import record_input_maxima, smoothed_copy

log = logging.getLogger(__name__)

BLOCKS_DIR = "int8_blocks"
BLOCK_KINDS = ("attention", "feed_forward")
# torch.export specializes a dimension whose example size is 0 or 1, so dynamic ones start at 2 (see
# BlockwiseEncoder.attention_block for how a smaller block input is brought up to it).
MIN_DYNAMIC_SIZE = 2
# Dynamo compilations one compiled block may need: its own instance, and one shape specialisation.
RECOMPILES_PER_BLOCK = 2


class _AttentionBlock(nn.Module):
    """One layer's self-attention as an exportable module (it holds that layer's weights only), fused.

    A layer that ranks tokens also returns its queries and keys, from which the eager code scores the tokens in
    groups of similar lengths (``attention_with_scores``); a graph cannot loop over examples of their own lengths.
    Fused, no graph writes out the [B, H, n, n] probabilities, whose passes over memory dominate long inputs.
    """

    def __init__(self, attention: nn.Module, with_keys: bool) -> None:
        super().__init__()
        self.attention = attention
        self.with_keys = with_keys

    def forward(self, hidden: torch.Tensor, alive: torch.Tensor) -> tuple[torch.Tensor, ...] | torch.Tensor:
        attended, query, key = fused_self_attention(self.attention, hidden, alive)
        return (attended, query, key) if self.with_keys else attended


class _FeedForwardBlock(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, attended: torch.Tensor) -> torch.Tensor:
        return feed_forward(self.layer, attended)


def _fp32_blocks(model: TokenPruningBertPreTrainedModel) -> list[dict[str, nn.Module]]:
    ranking = model.ranking_layers()
    return [
        {"attention": _AttentionBlock(layer.attention, index in ranking), "feed_forward": _FeedForwardBlock(layer)}
        for index, layer in enumerate(model.bert.encoder.layer)
    ]


class BlockwiseEncoder(TokenPruningBertPreTrainedModel):
    """A token-pruning model running its encoder blocks through installed graphs (physical mode only).

    The graphs are INT8 (``quantize_int8``/``load_int8``) or the FP32 blocks under torch.compile
    (``compiled_fp32``): either way the token selection between blocks is the model's own eager code, and so
    is the head (classifier, or QA span head over the forwarded token states). Mixed in before a head class.
    """

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._blocks: list[dict[str, Callable[..., Any]]] | None = None  # a plain list: not submodules

    def use_blocks(self, blocks: list[dict[str, Callable[..., Any]]]) -> None:
        if len(blocks) != self.config.num_hidden_layers:
            raise ValueError(f"need blocks for {self.config.num_hidden_layers} layers, got {len(blocks)}")
        self._blocks = blocks

    def attention_block(
        self,
        index: int,
        hidden: torch.Tensor,
        keys: torch.Tensor,
        scores: ScoreKind = "tracked",
        score_rows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The installed graph. Only a ranking layer's graph gives what token scores are made of (queries and
        keys, ``_AttentionBlock``), so ``scores`` is read as: a layer that does not rank returns None, and
        asking it for scores is an error.

        A deep prune can leave a batch one token long ([CLS] alone): it gets a dead key slot appended (masked,
        so no live token's output changes) because an exported graph's dynamic dimensions start at 2.
        """
        ranking = index in self.ranking_layers()
        if scores != "none" and not ranking:
            raise ValueError(f"layer {index} of a blockwise model ranks no tokens: it has no attention scores")
        tokens = hidden.shape[1]
        output = self._block(index, "attention")(
            _pad_dim(hidden, 1, MIN_DYNAMIC_SIZE), _pad_dim(keys, 1, MIN_DYNAMIC_SIZE)
        )
        if not ranking:
            return output[:, :tokens], None
        attended, query, key = output
        received = attention_with_scores(query[:, :, :tokens], key[:, :, :tokens], keys, score_rows)[1]
        return attended[:, :tokens], received

    def feed_forward_block(self, index: int, attended: torch.Tensor) -> torch.Tensor:
        """The installed graph; like attention, fewer than 2 rows (or tokens) are padded with zero rows,
        which the row-wise FFN keeps apart from the real ones."""
        dim = 0 if attended.dim() == 2 else 1
        size = attended.shape[dim]
        output = self._block(index, "feed_forward")(_pad_dim(attended, dim, MIN_DYNAMIC_SIZE))
        return output.narrow(dim, 0, size)

    def forward(self, *args: Any, mode: str = "physical", **kwargs: Any) -> Any:
        if mode != "physical":
            raise ValueError("a blockwise (INT8 or compiled) model runs in 'physical' mode only")
        return super().forward(*args, mode=mode, **kwargs)

    def _block(self, index: int, kind: str) -> Callable[..., Any]:
        if self._blocks is None:
            raise RuntimeError("no blocks installed: use quantize_int8(), load_int8() or compiled_fp32()")
        return self._blocks[index][kind]

    def compile_blocks(self) -> None:
        """torch.compile every block, with Inductor freezing (without which INT8 is slower than FP32) and its C++
        wrapper, which calls a block's kernels without Python in between (`python -m studies.compile_wrapper`)."""
        torch._inductor.config.freezing = True
        torch._inductor.config.cpp_wrapper = True
        # Frozen weights are constants of the graph, so each block instance is a recompilation of its class's
        # forward; past Dynamo's per-function limit the remaining blocks would silently run eager.
        torch._dynamo.config.recompile_limit += RECOMPILES_PER_BLOCK * len(self._blocks)
        self.use_blocks(
            [{kind: torch.compile(block, dynamic=True) for kind, block in layer.items()} for layer in self._blocks]
        )


class BlockwiseTokenPruningBertForSequenceClassification(BlockwiseEncoder, TokenPruningBertForSequenceClassification):
    pass


class BlockwiseTokenPruningBertForQuestionAnswering(BlockwiseEncoder, TokenPruningBertForQuestionAnswering):
    pass


def blockwise_class(model_or_dir: TokenPruningBertPreTrainedModel | str | Path) -> type[BlockwiseEncoder]:
    """The blockwise counterpart of a token-pruning model, or of the model saved in a directory."""
    if isinstance(model_or_dir, TokenPruningBertPreTrainedModel):
        is_qa = isinstance(model_or_dir, TokenPruningBertForQuestionAnswering)
    else:
        is_qa = pruning_model_class(model_or_dir) is TokenPruningBertForQuestionAnswering
    if is_qa:
        return BlockwiseTokenPruningBertForQuestionAnswering
    return BlockwiseTokenPruningBertForSequenceClassification


def compiled_fp32(model: TokenPruningBertPreTrainedModel) -> BlockwiseEncoder:
    """``model`` with each FP32 block under torch.compile: the compiled baseline the INT8 model is compared to."""
    blockwise = blockwise_class(model)(model.config)
    blockwise.load_state_dict(model.state_dict())
    blockwise.eval().use_blocks(_fp32_blocks(blockwise))
    blockwise.compile_blocks()
    return blockwise


def quantize_int8(
    model: TokenPruningBertPreTrainedModel,
    calibration: Iterable[dict[str, torch.Tensor]],
    activation_algorithm: str = "kl",
    smoothing_alpha: float | None = None,
) -> tuple[BlockwiseEncoder, list[dict[str, tuple[torch.Tensor, ...]]]]:
    """Static INT8 of ``model``'s encoder blocks, calibrated on ``calibration`` batches (model inputs).

    ``activation_algorithm`` picks how INC turns the observed activations into ranges: ``kl`` (the histogram
    range that loses least information, which clips rare outliers) or ``minmax`` (INC's default, the full
    observed range). KL is the default because minmax spends the 256 levels on rare outliers, so INT8 keeps fewer
    of the FP32 model's predictions (``python -m studies.int8_calibration`` compares the two).
    ``smoothing_alpha`` (None: off) first applies SmoothQuant to every linear of every block (``top.smooth_quant``),
    with per-channel input maxima observed on the same calibration batches.
    Returns the quantized model and, per layer, the example inputs its blocks were exported with (saving needs them).
    """
    from neural_compressor.torch.export import export
    from neural_compressor.torch.quantization import StaticQuantConfig, convert, prepare

    if activation_algorithm not in INT8_ACTIVATION_ALGORITHMS:
        raise ValueError(
            f"activation_algorithm must be one of {INT8_ACTIVATION_ALGORITHMS}, got {activation_algorithm!r}"
        )

    batches = list(calibration)
    if not batches:
        raise ValueError("INT8 calibration needs at least one batch")
    int8 = blockwise_class(model)(model.config)
    int8.load_state_dict(model.state_dict())
    int8.eval()
    examples = _record_block_inputs(int8, batches[0])
    blocks = _fp32_blocks(int8)
    if smoothing_alpha is not None:
        blocks = _smoothed_blocks(int8, blocks, batches, smoothing_alpha)
    max_tokens = int8.config.max_position_embeddings
    prepared = []
    for fp32, inputs in zip(blocks, examples, strict=True):
        prepared.append(
            {
                kind: prepare(
                    export(fp32[kind], inputs[kind], dynamic_shapes=_dynamic_shapes(kind, inputs[kind], max_tokens)),
                    StaticQuantConfig(act_algo=activation_algorithm),
                    example_inputs=inputs[kind],
                )
                for kind in BLOCK_KINDS
            }
        )
    int8.use_blocks(prepared)
    with torch.no_grad():
        for batch in batches:  # observers see the pruned activations each block gets at inference
            int8(**batch)
    int8.use_blocks([{kind: convert(block) for kind, block in layer.items()} for layer in prepared])
    return int8, examples


def _smoothed_blocks(
    model: BlockwiseEncoder,
    blocks: list[dict[str, nn.Module]],
    batches: list[dict[str, torch.Tensor]],
    alpha: float,
) -> list[dict[str, nn.Module]]:
    """SmoothQuant copies of ``blocks``, scaled by the inputs their linears see when ``model`` runs ``batches``."""
    model.use_blocks(blocks)
    flat = [layer[kind] for layer in blocks for kind in BLOCK_KINDS]
    maxima = iter(record_input_maxima(flat, lambda: [model(**batch) for batch in batches]))
    return [{kind: smoothed_copy(layer[kind], next(maxima), alpha) for kind in BLOCK_KINDS} for layer in blocks]


def save_int8(
    model: BlockwiseEncoder,
    examples: list[dict[str, tuple[torch.Tensor, ...]]],
    output_dir: str | Path,
) -> None:
    """Config and FP32 weights (save_pretrained) plus one INC archive per INT8 block, written atomically."""
    with atomic_directory(output_dir) as staging:
        model.save_pretrained(str(staging))
        for index, layer in enumerate(model._blocks or []):
            for kind in BLOCK_KINDS:
                layer[kind].save(example_inputs=examples[index][kind], output_dir=str(_block_dir(staging, index, kind)))


def load_int8(model_dir: str | Path) -> BlockwiseEncoder:
    """Reload what ``save_int8`` wrote: two lines for a user, then call it like the FP32 model."""
    from neural_compressor.torch.quantization import load

    model_dir = Path(model_dir)
    if not (model_dir / BLOCKS_DIR).is_dir():
        raise ModelDirError(f"{model_dir} is not an INT8 model directory: no {BLOCKS_DIR}/ (run the quantize stage)")
    model = blockwise_class(model_dir).from_pretrained(str(model_dir)).eval()
    model.use_blocks(
        [
            {kind: load(str(_block_dir(model_dir, index, kind))) for kind in BLOCK_KINDS}
            for index in range(model.config.num_hidden_layers)
        ]
    )
    return model


def set_inductor_cache(directory: str | Path) -> None:
    """Keep torch.compile's cache in the project's work dirs rather than /tmp (it survives between stages)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(directory).resolve()))


def _pad_dim(tensor: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``tensor`` padded with zeros (False for a mask) along ``dim`` to at least ``size``."""
    missing = size - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor, tensor.new_zeros(shape)], dim=dim)


def _block_dir(root: Path, index: int, kind: str) -> Path:
    return root / BLOCKS_DIR / f"layer{index}_{kind}"


def _dynamic_shapes(kind: str, inputs: tuple[torch.Tensor, ...], max_tokens: int) -> tuple[dict[int, Dim], ...]:
    """Every block input is [batch, tokens, ...] with both dynamic, except a pruning model's FFN input: its
    live tokens packed as [rows, d] (``TokenPruningBertPreTrainedModel._packed_feed_forward``)."""
    if kind == "feed_forward" and inputs[0].dim() == 2:
        return ({0: Dim("rows", min=MIN_DYNAMIC_SIZE)},)
    batch, tokens = Dim("batch"), Dim("tokens", min=MIN_DYNAMIC_SIZE, max=max_tokens)
    return tuple({0: batch, 1: tokens} for _ in inputs)


def _record_block_inputs(
    model: BlockwiseEncoder, batch: dict[str, torch.Tensor]
) -> list[dict[str, tuple[torch.Tensor, ...]]]:
    """Run one FP32 forward and keep the inputs each block receives (the export examples)."""
    recorded: list[dict[str, tuple[torch.Tensor, ...]]] = [{} for _ in range(model.config.num_hidden_layers)]

    def recording(index: int, kind: str, block: nn.Module) -> Callable[..., Any]:
        def run(*inputs: torch.Tensor) -> Any:
            recorded[index][kind] = tuple(tensor.detach().clone() for tensor in inputs)
            return block(*inputs)

        return run

    model.use_blocks(
        [
            {kind: recording(index, kind, block) for kind, block in layer.items()}
            for index, layer in enumerate(_fp32_blocks(model))
        ]
    )
    with torch.no_grad():
        model(**batch)
    return recorded


def calibration_batches(
    train: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, params: QuantizeParams
) -> list[dict[str, torch.Tensor]]:
    """The seeded draw of training batches (dynamic padding) that calibrates the INT8 activation ranges."""
    loader = batch_loader(train, tokenizer, params.calibration_batch_size, True, params.seed)
    return [model_inputs(batch) for batch in itertools.islice(loader, params.calibration_batches)]
