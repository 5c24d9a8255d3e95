"""A BERT classifier that removes tokens physically as it goes deeper (ToP's deployment form).

At each prune layer ``l`` the tokens are ranked by the attention they *receive* in layer ``l - 1`` (mean over
heads and live query rows; [CLS] always kept), and each example keeps ``round(keep_ratio * alive)`` of its live
non-[CLS] tokens. The removal happens right after layer ``l - 1``'s self-attention, before its FFN, as in ToP's
cost model, so that FFN already runs on the shorter sequence.

Three modes share every line but the last step of a prune: ``physical`` gathers the kept tokens into a shorter,
right-padded batch (each example keeps its own count; the batch is padded to the largest count and the padding
is masked as keys), drops an input batch's padding the same way before the first layer, and runs each FFN on
the live tokens packed into one matrix, so no padding costs FFN time; ``masked`` keeps
the full length and masks pruned tokens as keys (both give the same logits for the same decisions; only
``physical`` is faster); ``train`` simulates pruning with sampled hard-concrete masks as ToP trains it: each
live token falls into a rank bin, and the input of the prune layer is multiplied by ``1 - (1 - z_bin) * gate``
(keys are not masked, so the masks get gradients).

The weights are those of ``BertForSequenceClassification`` (same module names), so a fine-tuned teacher loads
directly; the prune layers and keep ratios travel in the config through save_pretrained/from_pretrained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import ModelOutput

from top.errors import ParamsError

Mode = Literal["physical", "masked", "train"]
# Layers whose token scores a forward returns: True for every layer, or their 0-based indices.
ScoreRequest = bool | Sequence[int]
# How a layer's attention yields its token scores (see self_attention).
ScoreKind = Literal["tracked", "detached", "none"]


def configure_pruning(config: BertConfig, prune_layers: list[int], keep_ratios: list[float]) -> BertConfig:
    """Validate and store the prune schedule on ``config`` (it is saved with the model)."""
    if len(prune_layers) != len(keep_ratios):
        raise ParamsError(f"{len(prune_layers)} prune layers but {len(keep_ratios)} keep ratios")
    layers = config.num_hidden_layers
    for layer in prune_layers:
        if not 1 <= layer < layers:
            raise ParamsError(f"prune layer {layer} is outside the model: it must be in 1..{layers - 1}")
    if len(set(prune_layers)) != len(prune_layers):
        raise ParamsError(f"prune layers must be distinct, got {prune_layers}")
    for ratio in keep_ratios:
        if not 0.0 <= ratio <= 1.0:  # 0 keeps [CLS] alone, which learned masks may choose
            raise ParamsError(f"keep ratio {ratio} must be in [0, 1]")
    config.prune_layers = list(prune_layers)
    config.keep_ratios = [float(ratio) for ratio in keep_ratios]
    return config


@dataclass
class TokenPruningOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    # Live tokens per example entering each layer's attention, plus the count after the last layer: [B, L+1].
    token_counts: torch.Tensor | None = None
    # Per layer, the attention each token received ([B, n]); None for a layer return_scores did not name.
    token_scores: tuple[torch.Tensor | None, ...] | None = None
    # What the head reads: the final [CLS] state [B, d] (classification) or every position's final state
    # [B, N, d] (QA); a distillation target richer than the logits.
    head_states: torch.Tensor | None = None


@dataclass
class TokenPruningQAOutput(TokenPruningOutput):
    start_logits: torch.Tensor | None = None  # [B, N]: one per input position, pruned tokens included
    end_logits: torch.Tensor | None = None


@dataclass
class EncoderPass:
    """What the pruning encoder hands a head: the survivors' final states and, on request, every token's."""

    hidden: torch.Tensor  # [B, n, d]: final states of the surviving tokens ([CLS] first)
    counts: torch.Tensor
    scores: tuple[torch.Tensor | None, ...] | None
    token_states: torch.Tensor | None  # [B, N, d] in input positions: each token's last state while alive


class TokenPruningBertPreTrainedModel(BertPreTrainedModel):
    """The shared pruning encoder; subclasses add a head (sequence classification or extractive QA)."""

    add_pooling_layer = True

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        configure_pruning(config, getattr(config, "prune_layers", []), getattr(config, "keep_ratios", []))
        self.bert = BertModel(config, add_pooling_layer=self.add_pooling_layer)

    def set_keep_ratios(self, keep_ratios: list[float]) -> TokenPruningBertPreTrainedModel:
        """Install deployment keep ratios (one per prune layer) in the config, which save_pretrained keeps."""
        configure_pruning(self.config, self.config.prune_layers, keep_ratios)
        return self

    def ranking_layers(self) -> set[int]:
        """The 0-based layers whose attention ranks the tokens entering the next (prune) layer."""
        return {layer - 1 for layer in self.config.prune_layers}

    def keep_ratio_before(self, layer: int) -> float | None:
        """The keep ratio applied to the tokens entering ``layer``, or None when it prunes nothing."""
        schedule = dict(zip(self.config.prune_layers, self.config.keep_ratios, strict=True))
        return schedule.get(layer)

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        mode: Mode,
        masks: tuple[torch.Tensor, torch.Tensor] | None,
        return_scores: ScoreRequest,
        protected: torch.Tensor | None = None,
        track_states: bool = False,
        rank_by_protected: bool = False,
    ) -> EncoderPass:
        """The encoder with token pruning. ``return_scores`` names the layers (True: every layer) whose
        received attention comes back, with gradients when they are enabled; the rankings that only select
        tokens are computed without, which lets their layers' attention run fused. ``protected`` ([B, N] bool)
        tokens are never pruned: the keep ratio applies to the others. With ``track_states``, a token removed
        before layer ``l - 1``'s FFN keeps the state it entered layer ``l - 1`` with (the output of the last
        layer it went through whole), so every input position has a final state, in all three modes alike (in
        ``train`` mode, a soft keep weight w mixes ``w * continuing + (1 - w) * forwarded``, which is exact at
        w in {0, 1}). With ``rank_by_protected`` a token's score is the attention it receives from the fixed
        tokens ([CLS] and the protected ones) rather than from every live token.
        """
        if mode not in ("physical", "masked", "train"):
            raise ValueError(f"mode must be 'physical', 'masked' or 'train', got {mode!r}")
        if (mode == "train") != (masks is not None):
            raise ValueError("masks are required in 'train' mode and only there")
        alive = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        fixed = _fixed_tokens(alive, protected)
        keys = alive  # train mode never changes the key mask: zero-weighted tokens still act as keys
        hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        states = _StateTracker(hidden, alive) if track_states else None
        counts, scores = [alive.sum(dim=1)], []
        layers = self.config.num_hidden_layers
        returned = set(range(layers)) if return_scores is True else set(return_scores or ())
        ranking = self.ranking_layers()
        # A pruning model runs no padding: it drops the input's up front (padding receives no attention, and
        # ToP's MACs count each example at its real length) and packs each layer's FFN onto the live tokens.
        # A dense model (no prune layers) keeps Hugging Face's behaviour.
        packed = mode == "physical" and bool(self.config.prune_layers)
        if packed and not bool(alive.all()):
            hidden, alive, fixed = _keep_physically(hidden, alive, fixed, states)
        for index in range(layers):
            entering = hidden
            score_kind = _score_kind(index in returned, index in ranking)
            score_rows = fixed if rank_by_protected else alive
            attended, received = self.attention_block(
                index, hidden, keys if mode == "train" else alive, score_kind, score_rows=score_rows
            )
            scores.append(received if index in returned else None)
            ratio = self.keep_ratio_before(index + 1)
            token_weight = None
            if mode == "train" and index + 1 in self.config.prune_layers:
                position = self.config.prune_layers.index(index + 1)
                token_weight = sampled_token_weights(received, alive, masks[0][position], masks[1][position], fixed)
                if states is not None:
                    states.soft_prune(entering, token_weight)
                alive = alive & (token_weight > 0)
            elif ratio is not None and mode != "train":
                keep = select_tokens(received, alive, ratio, fixed)
                if states is not None:
                    states.prune(entering, alive & ~keep)
                if mode == "physical":
                    attended, alive, fixed = _keep_physically(attended, keep, fixed, states)
                else:
                    alive = keep
            hidden = (
                self._packed_feed_forward(index, attended, alive)
                if packed
                else self.feed_forward_block(index, attended)
            )
            if token_weight is not None:
                hidden = hidden * token_weight[:, :, None]
            counts.append(alive.sum(dim=1))
        return EncoderPass(
            hidden=hidden,
            counts=torch.stack(counts, 1),
            scores=tuple(scores) if returned else None,
            token_states=None if states is None else states.final(hidden, alive),
        )

    def attention_block(
        self,
        index: int,
        hidden: torch.Tensor,
        keys: torch.Tensor,
        scores: ScoreKind = "tracked",
        score_rows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layer ``index``'s self-attention (with its output projection and LayerNorm) and the token scores
        (see ``self_attention`` for ``scores`` and ``score_rows``).

        This and ``feed_forward_block`` are the dense compute between two token selections; a quantized model
        swaps them for INT8 graphs and keeps everything else, the selection included, as it is.
        """
        return self_attention(self.bert.encoder.layer[index].attention, hidden, keys, scores, score_rows)

    def feed_forward_block(self, index: int, attended: torch.Tensor) -> torch.Tensor:
        return feed_forward(self.bert.encoder.layer[index], attended)

    def _packed_feed_forward(self, index: int, attended: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """The FFN on the live tokens only, as one [tokens, d] matrix; dead slots come back as zeros.

        After a prune each example keeps its own count and the batch is padded to the largest, so at batch 32
        the shorter examples' padding would otherwise cost FFN time (two thirds of a layer's projections) that
        the MACs at real lengths do not count. The FFN is row-wise, so packing changes no live token's output.
        The FFN always sees two dimensions here, even when nothing is padded, so that one INT8 or compiled
        graph serves every batch.
        """
        if bool(alive.all()):
            return self.feed_forward_block(index, attended.flatten(0, 1)).view(attended.shape)
        live = self.feed_forward_block(index, attended[alive])
        return attended.new_zeros(attended.shape).index_put((alive,), live)


class TokenPruningBertForSequenceClassification(TokenPruningBertPreTrainedModel):
    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        mode: Mode = "physical",
        masks: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_scores: ScoreRequest = False,
    ) -> TokenPruningOutput:
        """``masks`` (bin masks [P, bins], gates [P], one row per prune layer in config order) drive ``train``."""
        encoded = self.encode(input_ids, attention_mask, token_type_ids, mode, masks, return_scores)
        logits = self.classifier(self.dropout(self.bert.pooler(encoded.hidden)))
        return TokenPruningOutput(
            loss=self._loss(logits, labels),
            logits=logits,
            token_counts=encoded.counts,
            token_scores=encoded.scores,
            head_states=encoded.hidden[:, 0],
        )

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
        if labels is None:
            return None
        if self.num_labels == 1:
            return nn.functional.mse_loss(logits.squeeze(-1), labels.float())
        return nn.functional.cross_entropy(logits, labels)


class TokenPruningBertForQuestionAnswering(TokenPruningBertPreTrainedModel):
    """Extractive QA with token pruning: the span head reads every input position's forwarded final state.

    Same weights and module names as ``BertForQuestionAnswering``. With ``config.protect_question`` the
    question (segment 0: [CLS] question [SEP]) is never pruned; the keep ratios apply to the context. With
    ``config.rank_by_question`` too, the context is ranked by the attention it receives from the question alone:
    the tokens the question points at, where the answer is, rather than those the whole context attends to.
    """

    add_pooling_layer = False

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        config.protect_question = bool(getattr(config, "protect_question", False))
        config.rank_by_question = bool(getattr(config, "rank_by_question", False))
        if config.rank_by_question and not config.protect_question:
            raise ParamsError("rank_by_question needs protect_question: the question ranks the context only if kept")
        self.num_labels = 2
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        mode: Mode = "physical",
        masks: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_scores: ScoreRequest = False,
    ) -> TokenPruningQAOutput:
        protected = None
        if self.config.protect_question and token_type_ids is not None:
            protected = token_type_ids == 0
        encoded = self.encode(
            input_ids,
            attention_mask,
            token_type_ids,
            mode,
            masks,
            return_scores,
            protected,
            track_states=True,
            rank_by_protected=self.config.rank_by_question and protected is not None,
        )
        start_logits, end_logits = self.qa_outputs(encoded.token_states).unbind(dim=-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = (
                nn.functional.cross_entropy(start_logits, start_positions)
                + nn.functional.cross_entropy(end_logits, end_positions)
            ) / 2
        return TokenPruningQAOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            token_counts=encoded.counts,
            token_scores=encoded.scores,
            head_states=encoded.token_states,
        )


def pruning_model_class(model_dir: str | Path) -> type[TokenPruningBertPreTrainedModel]:
    """The token-pruning counterpart of a saved model's head: extractive QA, or sequence classification."""
    config = TokenPruningBertForSequenceClassification.config_class.from_pretrained(str(model_dir))
    if any(name.endswith("ForQuestionAnswering") for name in config.architectures or ()):
        return TokenPruningBertForQuestionAnswering
    return TokenPruningBertForSequenceClassification


class _StateTracker:
    """Each input position's state from the last layer it was alive in, kept in input order [B, N, d]."""

    def __init__(self, embeddings: torch.Tensor, alive: torch.Tensor) -> None:
        batch, length = alive.shape
        self.rows = torch.arange(batch, device=alive.device)[:, None].expand(batch, length)
        self.positions = torch.arange(length, device=alive.device)[None, :].expand(batch, length)
        self.states = torch.zeros_like(embeddings)
        self.survival = torch.ones_like(embeddings[..., 0])  # train mode: product of the keep weights so far
        self.soft = False

    def prune(self, entering: torch.Tensor, dropped: torch.Tensor) -> None:
        self.states = self.states.index_put((self.rows[dropped], self.positions[dropped]), entering[dropped])

    def soft_prune(self, entering: torch.Tensor, weight: torch.Tensor) -> None:
        self.states = self.states + (self.survival * (1 - weight))[:, :, None] * entering
        self.survival = self.survival * weight
        self.soft = True

    def gather(self, order: torch.Tensor) -> None:
        self.positions = torch.gather(self.positions, 1, order)
        self.rows = self.rows[:, : order.shape[1]]

    def final(self, hidden: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        if self.soft:
            return self.states + (self.survival * alive)[:, :, None] * hidden
        return self.states.index_put((self.rows[alive], self.positions[alive]), hidden[alive])


def self_attention(
    attention: nn.Module,
    hidden: torch.Tensor,
    keys: torch.Tensor,
    scores: ScoreKind = "tracked",
    score_rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """BERT self-attention with dead ``keys`` masked, and on request the attention each token received (over
    the live query ``score_rows``, by default the live keys; see ``attention_with_scores``).

    ``tracked``: the probabilities are written out and both the output and the scores come from them, so
    gradients flow through both (one QK^T: the cheapest way to get the scores without gradients too).
    ``detached`` and ``none``: the output from the fused kernel, whose backward stores no [B, H, n, n] tensors
    (on long inputs the written-out form dominates a ToP training step; ``python -m studies.top_step_cost``);
    ``detached`` then recomputes the scores without gradient, which is all a token ranking needs.
    """
    if scores == "tracked" or (scores == "detached" and _dropout_rate(attention.self) > 0):
        # With attention dropout the fused kernel falls back to the written-out form on CPU: compute it once.
        query, key, value = project_qkv(attention.self, hidden)
        context, received = attention_with_scores(query, key, keys, score_rows, value, attention.self.dropout)
        attended = attention_output(attention, context, hidden)
        return attended, (received.detach() if scores == "detached" else received)
    attended, query, key = fused_self_attention(attention, hidden, keys)
    if scores == "none":
        return attended, None
    with torch.no_grad():
        return attended, attention_with_scores(query, key, keys, score_rows)[1]


def fused_self_attention(
    attention: nn.Module, hidden: torch.Tensor, keys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT self-attention through the fused kernel, with its queries and keys (to score tokens from)."""
    query, key, value = project_qkv(attention.self, hidden)
    context = nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=keys[:, None, None, :], dropout_p=_dropout_rate(attention.self)
    )
    return attention_output(attention, context, hidden), query, key


def _dropout_rate(attention: nn.Module) -> float:
    """The attention-probability dropout a self-attention applies now (none in eval mode)."""
    return attention.dropout.p if attention.training else 0.0


def project_qkv(attention: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values of a BERT self-attention, [B, H, n, head size] each."""
    batch, length, _ = hidden.shape
    shape = (batch, length, attention.num_attention_heads, attention.attention_head_size)
    projections = (attention.query, attention.key, attention.value)
    query, key, value = (projection(hidden).view(shape).transpose(1, 2) for projection in projections)
    return query, key, value


def attention_output(attention: nn.Module, context: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The heads' context [B, H, n, head size] through the output projection, residual and LayerNorm."""
    batch, heads, length, head_size = context.shape
    return attention.output(context.transpose(1, 2).reshape(batch, length, heads * head_size), hidden)


# Elements of one group's [examples, H, n, n] probabilities in attention_with_scores (4 MiB of FP32).
SCORE_GROUP_ELEMENTS = 2**20


def attention_with_scores(
    query: torch.Tensor,
    key: torch.Tensor,
    keys: torch.Tensor,
    rows: torch.Tensor | None = None,
    value: torch.Tensor | None = None,
    dropout: nn.Module | None = None,
    group_elements: float = SCORE_GROUP_ELEMENTS,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Written-out attention over the live ``keys``: the context [B, H, n, head size] (None without ``value``;
    rows of dead keys are not meaningful) and the token scores [B, n], the attention each token received,
    averaged over heads and the live query ``rows`` (default: ``keys``; 0 for dead tokens).

    The batch runs in groups of similar lengths, each cut to its longest example and small enough
    (``group_elements`` probabilities) to stay in cache: the [B, H, n, n] probabilities of a whole padded
    batch take several passes over memory much larger than the caches. ``python -m
    studies.score_attention_cost`` measures what that buys against the whole batch at once and against one
    example at a time.
    """
    rows = keys if rows is None else rows
    batch, heads, length, head_size = query.shape
    extents = torch.where(keys, torch.arange(1, length + 1, device=keys.device), 0).amax(dim=1).tolist()
    context = None if value is None else value.new_zeros(value.shape)
    received = query.new_zeros(batch, length)
    for group in _length_groups(extents, heads, group_elements):
        examples, extent = torch.tensor(group, device=keys.device), extents[group[-1]]
        queries = query[examples, :, :extent] * head_size**-0.5
        logits = queries @ key[examples, :, :extent].transpose(-1, -2)
        probs = logits.masked_fill(~keys[examples, None, None, :extent], float("-inf")).softmax(dim=-1)
        received[examples, :extent] = received_attention(probs, rows[examples, :extent])
        if context is not None:
            weights = probs if dropout is None else dropout(probs)
            context[examples, :, :extent] = weights @ value[examples, :, :extent]
    return context, received


def received_attention(probs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The attention each token received [B, n]: ``probs`` [B, H, n, n] averaged over heads and the live query
    ``rows`` [B, n] (0 for dead keys, whose probabilities are 0)."""
    weights = rows.to(probs.dtype)
    # A masked sum, not a matrix product: scoring is a reduction, which ToP's MACs do not count.
    scores = (probs.sum(dim=1) * weights[:, :, None]).sum(dim=1)
    return scores / (weights.sum(dim=1, keepdim=True).clamp(min=1) * probs.shape[1])


def _length_groups(extents: list[int], heads: int, group_elements: float) -> list[list[int]]:
    """Example indices by increasing length, grouped while a group's probabilities fit ``group_elements``."""
    groups: list[list[int]] = []
    for example in sorted(range(len(extents)), key=extents.__getitem__):
        group = groups[-1] if groups else None
        if group is None or (len(group) + 1) * heads * extents[example] ** 2 > group_elements:
            groups.append([example])
        else:
            group.append(example)
    return groups


def _score_kind(returned: bool, ranking: bool) -> ScoreKind:
    """How a layer computes its attention: probabilities only where a score is needed, and with gradients
    only where a returned score may be trained (a no-grad forward gets them most cheaply the same way)."""
    if returned or (ranking and not torch.is_grad_enabled()):
        return "tracked"
    return "detached" if ranking else "none"


def feed_forward(layer: nn.Module, attended: torch.Tensor) -> torch.Tensor:
    """A BERT layer's FFN with its residual connection and LayerNorm."""
    return layer.output(layer.intermediate(attended), attended)


def sampled_token_weights(
    scores: torch.Tensor,
    alive: torch.Tensor,
    bin_masks: torch.Tensor,
    gate: torch.Tensor,
    fixed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Training-time keep weight of every token: its rank bin's mask, switched by the layer gate.

    A live prunable token of rank r among n gets bin floor(r / n * bins); ``fixed`` tokens ([CLS] at least)
    get 1, dead tokens 0.
    """
    bins = bin_masks.shape[0]
    fixed = _fixed_tokens(alive, fixed)
    candidates = alive & ~fixed
    live = candidates.sum(dim=1, keepdim=True).clamp(min=1)
    rank = scores.masked_fill(~candidates, float("-inf")).argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    token_bin = (rank * bins // live).clamp(max=bins - 1)
    weight = 1.0 - (1.0 - bin_masks[token_bin]) * gate
    return torch.where(fixed, torch.ones_like(weight), weight * candidates)


def select_tokens(
    scores: torch.Tensor, alive: torch.Tensor, keep_ratio: float, fixed: torch.Tensor | None = None
) -> torch.Tensor:
    """Keep the ``fixed`` tokens ([CLS] at least) and the round(keep_ratio * n) best-scored of the n others."""
    fixed = _fixed_tokens(alive, fixed)
    candidates = alive & ~fixed
    keep_count = keep_counts(candidates, keep_ratio)
    ranked = scores.masked_fill(~candidates, float("-inf"))
    order = ranked.argsort(dim=1, descending=True, stable=True)
    rank = order.argsort(dim=1)
    return ((rank < keep_count[:, None]) & candidates) | fixed


def keep_counts(candidates: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """How many of each example's prunable live tokens (``candidates`` [B, n]) a prune keeps: round(ratio * n)."""
    return torch.round(candidates.sum(dim=1).to(torch.float32) * keep_ratio).long()


def _fixed_tokens(alive: torch.Tensor, fixed: torch.Tensor | None) -> torch.Tensor:
    """Tokens no pruning may remove: the given ones that are alive, and [CLS]."""
    fixed = torch.zeros_like(alive) if fixed is None else fixed & alive
    fixed = fixed.clone()
    fixed[:, 0] = alive[:, 0]
    return fixed


def _keep_physically(
    hidden: torch.Tensor, keep: torch.Tensor, fixed: torch.Tensor, states: _StateTracker | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gather the kept tokens to the front of a shorter batch, with their fixed flags and tracked positions."""
    order = kept_order(keep)
    hidden, alive = gather_tokens(hidden, keep, order)
    if states is not None:
        states.gather(order)
    return hidden, alive, torch.gather(fixed, 1, order) & alive


def kept_order(keep: torch.Tensor) -> torch.Tensor:
    """Input positions of each example's kept tokens, in order, padded to the largest count: [B, max kept]."""
    return (~keep).to(torch.int8).argsort(dim=1, stable=True)[:, : int(keep.sum(dim=1).max())]


def gather_tokens(
    hidden: torch.Tensor, keep: torch.Tensor, order: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each example's kept tokens to the front (order preserved) and cut the batch to the longest."""
    order = kept_order(keep) if order is None else order
    gathered = torch.gather(hidden, 1, order[:, :, None].expand(-1, -1, hidden.shape[-1]))
    alive = torch.arange(order.shape[1], device=keep.device)[None, :] < keep.sum(dim=1)[:, None]
    return gathered, alive
