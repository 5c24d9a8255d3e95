"""ToP training: ranking distillation plus coarse-to-fine L0 masks under a Lagrangian MACs constraint.

One step: sample the masks, run the student in ``train`` mode and look up the frozen teacher's outputs (computed
once for the whole training split, see ``teacher_cache``; with ``prune.cache_teacher_outputs`` false the teacher
runs in every step); the loss is the logit distillation (KL at temperature T, scaled by T^2; MSE for regression)
with an optional MSE on the head's input states (our addition, off at weight 0), the Lagrangian term on the
expected MACs ratio, and the ARP2 ranking loss on the distilled layers, whose weight decays with the MACs warm-up
(to 1% of its value, as in the authors' recipe). Model weights, masks and multipliers have their own optimizers;
the multipliers ascend. Evaluation uses the deterministic keep ratios on the physically pruned model, and a
checkpoint can become the best one only once its measured MACs ratio meets the target (see ``selection_rank``).

The forwards run under autocast to ``prune.precision`` (bf16 on CUDA by default); the losses, the masks and the
Lagrangian are computed in float32.

After ``epochs`` of this search, ``finetune_epochs`` more train the best checkpoint's weights with its keep
ratios frozen: logit distillation on the physically pruned model, the deployed forward itself. The authors
search for 200 epochs, long enough for the multipliers to settle at the target; in the few epochs a CPU
affords they overshoot, and the model that met the budget has had few steps of training at it.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from top.backbone import load_float32
from top.checkpoint import restore_training_state, save_training_state
from top.data.batches import batch_loader, model_inputs, with_example_index
from top.data.tasks import TaskSpec
from top.device import autocast_for, resolve_device, training_record
from top.errors import ParamsError
from top.evaluate import Evaluation, evaluate
from top.optim import adamw
from top.params import PruneParams
from top.pruning.l0 import (
    LagrangianConstraint,
    PruningMasks,
    expected_macs_ratio,
    keep_ratios_at_budget,
    warmed_up_target,
    warmup_progress,
)
from top.pruning.macs import EncoderDims
from top.pruning.model import (
    TokenPruningBertForQuestionAnswering,
    TokenPruningBertPreTrainedModel,
    configure_pruning,
    pruning_model_class,
)
from top.pruning.ranking_loss import ranking_distillation_loss
from top.pruning.teacher_cache import (
    TeacherOutputStore,
    TeacherTargets,
    cached_teacher_outputs,
    output_names,
    teacher_targets,
)
from top.qa.evaluate import QAReference

log = logging.getLogger(__name__)

# Part of the checkpoint key: bump it when the saved training state changes meaning, so that a rerun never
# resumes from a checkpoint that other code wrote.
TRAINING_STATE_FORMAT = 6
# Points of the search's trajectory (losses, expected MACs, multipliers, keep ratios) recorded between evaluations.
TRAJECTORY_POINTS = 200

RANK_WEIGHT_FLOOR = 0.01
# Training-state key holding the keep ratios the fine-tuning phase trains at; absent while searching.
FROZEN_KEEP_RATIOS = "frozen_keep_ratios"


def load_models(
    teacher_dir: str | Path, params: PruneParams
) -> tuple[TokenPruningBertPreTrainedModel, TokenPruningBertPreTrainedModel]:
    """The frozen dense teacher and a student initialised from it, with the prune layers of ``params``."""
    # The teacher's last-layer ranking, the distillation target, is scored the way the student scores its own.
    teacher = load_with_schedule(teacher_dir, [], [], params.rank_by_question, params.rank_by_question).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    layers = teacher.config.num_hidden_layers
    for layer in params.distill_layers:
        if not 0 <= layer < layers:
            raise ParamsError(f"prune.distill_layers: layer {layer} is outside the model (0..{layers - 1})")
    student = load_with_schedule(
        teacher_dir,
        params.prune_layers,
        [1.0] * len(params.prune_layers),
        params.protect_question,
        params.rank_by_question,
    )
    return teacher, student


def load_with_schedule(
    model_dir: str | Path,
    prune_layers: list[int],
    keep_ratios: list[float],
    protect_question: bool = False,
    rank_by_question: bool = False,
) -> TokenPruningBertPreTrainedModel:
    """A saved BERT model loaded with a given prune schedule (validated before any weight is read).

    ``protect_question`` and ``rank_by_question`` apply to QA models only: their question tokens are then never
    pruned, and with the second the context is ranked by the attention the question gives it.
    """
    model_class = pruning_model_class(model_dir)
    if (protect_question or rank_by_question) and model_class is not TokenPruningBertForQuestionAnswering:
        raise ParamsError(
            f"prune.protect_question and prune.rank_by_question are for QA models only; {model_dir} holds a classifier"
        )
    config = model_class.config_class.from_pretrained(str(model_dir))
    configure_pruning(config, prune_layers, keep_ratios)
    if model_class is TokenPruningBertForQuestionAnswering:
        config.protect_question = protect_question
        config.rank_by_question = rank_by_question
    return load_float32(model_class, model_dir, config=config)


def train_token_pruning(
    teacher: TokenPruningBertPreTrainedModel,
    student: TokenPruningBertPreTrainedModel,
    spec: TaskSpec,
    splits: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    params: PruneParams,
    max_length: int,
    checkpoint_file: str | Path | None = None,
    reference: QAReference | None = None,
    teacher_store: TeacherOutputStore | None = None,
) -> tuple[TokenPruningBertPreTrainedModel, Evaluation, dict[str, Any]]:
    """Train ``student``; return the best model (keep ratios set in its config), its evaluation and a log.

    With ``checkpoint_file``, the whole training state (weights, masks, multipliers, optimizers, RNG, best
    model so far, phase) is written there at every evaluation, and a rerun resumes from it: data order and
    mask samples are seeded per epoch and restored, so a resumed run ends where an uninterrupted one would.
    A QA task needs its ``reference`` to score the eval windows. With ``prune.cache_teacher_outputs``, the
    teacher's outputs are computed once before the first step, and kept in ``teacher_store`` when one is given.
    """
    torch.manual_seed(params.seed)
    if params.threads is not None:
        torch.set_num_threads(params.threads)
    device = torch.device(resolve_device(params.device, "prune.device"))
    dims = EncoderDims.from_config(student.config)
    masks = PruningMasks(len(params.prune_layers), params.bins, gates_forced_on=params.gates == "forced_on")
    constraint = LagrangianConstraint(params.constraint_penalty)
    for module in (teacher, student, masks, constraint):
        module.to(device)
    budget_split = splits[params.budget_lengths]
    check_target_reachable(budget_split, tokenizer, params, student.config)
    # Counted on the eval split, the constraint sees every eval length at every step; on train, each batch's own.
    budget_lengths = None
    if params.budget_lengths == "eval":
        budget_lengths = tuple(
            t.to(device) for t in split_lengths(budget_split, tokenizer, params.eval_batch_size, student.config)
        )
    train_split, cached, cache_log = splits["train"], None, {"source": "live"}
    if params.cache_teacher_outputs:
        names = output_names(spec, params.state_distill_weight > 0)
        cached, cache_log = cached_teacher_outputs(
            teacher,
            train_split,
            tokenizer,
            spec,
            names,
            params.eval_batch_size,
            max_length,
            device,
            params.precision,
            teacher_store,
        )
        train_split = with_example_index(train_split)
    # Embeddings stay frozen, as in the authors' recipe.
    for name, parameter in student.named_parameters():
        parameter.requires_grad_("embeddings" not in name)
    weights = [parameter for parameter in student.parameters() if parameter.requires_grad]
    optimizers = (
        adamw(weights, params.learning_rate),
        adamw(masks.parameters(), params.mask_learning_rate),
        multiplier_optimizer(constraint, params),
    )
    batches_per_epoch = len(batch_loader(splits["train"], tokenizer, params.batch_size, shuffle=False, seed=0))
    search_steps = max(1, math.ceil(batches_per_epoch * params.epochs))
    total_steps = search_steps + math.ceil(batches_per_epoch * params.finetune_epochs)
    warmup_steps = int(search_steps * params.warmup_ratio)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizers[0], lambda step: _lr_factor(step, search_steps, total_steps)
    )
    modules = {"student": student, "masks": masks, "constraint": constraint, "schedule": schedule}
    modules |= {f"optimizer{i}": optimizer for i, optimizer in enumerate(optimizers)}

    state = {"step": 0, "best": None, "cheapest": None, "history": [], "trajectory": []}
    trajectory_every = max(1, search_steps // TRAJECTORY_POINTS)
    if checkpoint_file is not None and Path(checkpoint_file).is_file():
        state = restore_training_state(Path(checkpoint_file), modules)
        log.info("resuming ToP training from step %d", state["step"])
        if FROZEN_KEEP_RATIOS in state:
            student.set_keep_ratios(state[FROZEN_KEEP_RATIOS])
    started = time.perf_counter()
    progress = tqdm(total=total_steps, initial=state["step"], desc="ToP training")
    while state["step"] < total_steps:
        epoch, skip = divmod(state["step"], batches_per_epoch)
        loader = batch_loader(
            train_split, tokenizer, params.batch_size, True, params.seed + epoch, pin_memory=device.type == "cuda"
        )
        for position, batch in enumerate(loader):
            if position < skip:
                continue
            step = state["step"]
            if step >= total_steps:
                break
            if step == search_steps and FROZEN_KEEP_RATIOS not in state:
                _start_finetuning(state, student, optimizers[0], params, dims, budget_split, tokenizer)
            student.train()
            targets = None if cached is None else cached.targets(batch, device)
            batch = {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}
            if step < search_steps:
                warmup = warmup_progress(step, warmup_steps)
                target = warmed_up_target(params.target_macs, warmup)
                rank_weight = params.rank_loss_weight * max(RANK_WEIGHT_FLOOR, 1.0 - warmup)
                losses = _step_losses(
                    teacher,
                    student,
                    masks,
                    constraint,
                    batch,
                    spec,
                    params,
                    dims,
                    target,
                    rank_weight,
                    targets,
                    budget_lengths,
                )
            else:
                target = params.target_macs
                losses = _finetune_losses(teacher, student, batch, spec, params, targets)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            constraint.ascend_()
            torch.nn.utils.clip_grad_norm_(weights, 1.0)
            for optimizer in optimizers:
                optimizer.step()
            schedule.step()
            masks.clamp_()
            state["step"] = step = step + 1
            progress.update(1)
            if step <= search_steps and step % trajectory_every == 0:
                state["trajectory"].append(_trajectory_point(step, target, losses, masks, constraint))
            if step % params.eval_steps == 0 or step in (search_steps, total_steps):
                _evaluate_and_keep_best(
                    state, student, masks, spec, splits, tokenizer, params, max_length, target, losses, reference
                )
                if checkpoint_file is not None:
                    save_training_state(Path(checkpoint_file), modules, state)
    progress.close()
    if state["best"] is None:
        raise ParamsError(
            f"ToP never reached the MACs target {params.target_macs} (last measured ratio "
            f"{state['history'][-1]['macs_ratio']:.3f}); train longer (prune.epochs) or pull harder "
            "(prune.constraint_penalty, prune.multiplier_learning_rate)"
        )
    _, best_weights, evaluation = state["best"]
    student.load_state_dict(best_weights)
    final = student.set_keep_ratios(evaluation.keep_ratios)
    return (
        final,
        evaluation,
        {
            "history": state["history"],
            "trajectory": state["trajectory"],
            "train_seconds": time.perf_counter() - started,
            "steps": state["step"],
            **training_record(device, params.precision),
            "teacher_outputs": cache_log,
        },
    )


def multiplier_optimizer(constraint: LagrangianConstraint, params: PruneParams) -> torch.optim.Optimizer:
    """The multipliers' optimizer (``prune.multiplier_update``): Adam, or SGD, whose step scales with the gap."""
    if params.multiplier_update == "error_scaled":
        return torch.optim.SGD(constraint.parameters(), lr=params.multiplier_learning_rate)
    return adamw(constraint.parameters(), params.multiplier_learning_rate)


def _lr_factor(step: int, search_steps: int, total_steps: int) -> float:
    """Linear decay to 0 over the search (the authors' schedule), then again from the full rate over the
    fine-tuning: its weights start at a restored checkpoint with fresh Adam moments, not where the search ended."""
    if step < search_steps:
        return 1.0 - step / search_steps
    return 1.0 - (step - search_steps) / max(1, total_steps - search_steps)


def _start_finetuning(
    state: dict[str, Any],
    student: TokenPruningBertPreTrainedModel,
    optimizer: torch.optim.Optimizer,
    params: PruneParams,
    dims: EncoderDims,
    budget_split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    """End the search: the best checkpoint's weights, and its keep ratios scaled to spend the MACs budget on
    the lengths of ``budget_split`` (``keep_ratios_at_budget``), become the fine-tuning start.

    A search that never got under the budget starts from its cheapest checkpoint instead, scaled down to the
    budget: the fine-tuned model then meets it, or the stage fails at the end as without fine-tuning.
    Adam's moments belong to the weights the search ended on, not to the restored ones, so they start anew.
    """
    if state["best"] is None:
        log.warning("the search never met the MACs budget; fine-tuning starts from its cheapest checkpoint")
    _, best_weights, evaluation = state["best"] or state["cheapest"]
    lengths, fixed = split_lengths(budget_split, tokenizer, params.eval_batch_size, student.config)
    prune_layers = list(params.prune_layers)
    keep_ratios = keep_ratios_at_budget(dims, lengths, prune_layers, evaluation.keep_ratios, params.target_macs, fixed)
    student.load_state_dict(best_weights)
    student.set_keep_ratios(keep_ratios)
    optimizer.state.clear()
    state[FROZEN_KEEP_RATIOS] = keep_ratios
    log.info(
        "search over at step %d; fine-tuning at keep ratios %s (the search's best: %s)",
        state["step"],
        [round(ratio, 4) for ratio in keep_ratios],
        evaluation.keep_ratios,
    )


def split_lengths(
    split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, batch_size: int, config: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every example's unpadded length and unprunable token count (``_real_lengths``) over a whole split."""
    lengths, fixed = zip(
        *(
            _real_lengths(model_inputs(batch), config)
            for batch in batch_loader(split, tokenizer, batch_size, shuffle=False, seed=0)
        ),
        strict=True,
    )
    return torch.cat(lengths), torch.cat(fixed)


def macs_floor(split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, params: PruneParams, config: Any) -> float:
    """The cheapest MACs ratio that ``params.prune_layers`` allow on ``split``.

    The layers before the first prune layer stay dense and [CLS] is never pruned, so the MACs ratio has a floor;
    the search's masks keep at least one bin per prune layer, so without fine-tuning (whose keep ratios are scaled
    freely) the floor is higher still.
    """
    cheapest = [0.0 if params.finetune_epochs > 0 else 1.0 / params.bins] * len(params.prune_layers)
    return split_macs_ratio(split, tokenizer, params, config, cheapest)


def split_macs_ratio(
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    params: PruneParams,
    config: Any,
    keep_ratios: list[float],
) -> float:
    """The MACs ratio of ``keep_ratios`` at ``params.prune_layers`` over ``split``'s real lengths, as the search's
    constraint and the fine-tuning's budget count it: a split of other lengths (where [CLS] is a larger or smaller
    share of each input) gives the same keep ratios another ratio (``prune.budget_lengths``)."""
    lengths, fixed = split_lengths(split, tokenizer, params.eval_batch_size, config)
    dims = EncoderDims.from_config(config)
    return float(expected_macs_ratio(dims, lengths, list(params.prune_layers), torch.tensor(keep_ratios), fixed))


def check_target_reachable(
    split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, params: PruneParams, config: Any
) -> None:
    """Fail before training when the target is under ``macs_floor``: such a run would train to the end and then
    fail."""
    floor = macs_floor(split, tokenizer, params, config)
    if params.target_macs + params.macs_tolerance < floor:
        raise ParamsError(
            f"prune.target_macs {params.target_macs} is under the cheapest model that prune.prune_layers "
            f"{list(params.prune_layers)} allow on this data ({floor:.3f}); prune from an earlier layer"
        )


def _real_lengths(inputs: dict[str, torch.Tensor], config: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Each example's unpadded length and its count of tokens no pruning removes ([CLS], or a protected question)."""
    lengths = inputs["attention_mask"].sum(dim=1)
    if getattr(config, "protect_question", False):
        return lengths, ((inputs["token_type_ids"] == 0) & inputs["attention_mask"].bool()).sum(dim=1)
    return lengths, torch.ones_like(lengths)


def _evaluate_and_keep_best(
    state: dict[str, Any],
    student: TokenPruningBertPreTrainedModel,
    masks: PruningMasks,
    spec: TaskSpec,
    splits: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    params: PruneParams,
    max_length: int,
    target: float,
    losses: dict[str, torch.Tensor],
    reference: QAReference | None,
) -> None:
    """Evaluate the current keep ratios (the masks' deterministic ones while searching, the frozen ones while
    fine-tuning) and keep the model if ``selection_rank`` puts it above the best."""
    finetuning = FROZEN_KEEP_RATIOS in state
    student.set_keep_ratios(state[FROZEN_KEEP_RATIOS] if finetuning else masks.deterministic_keep_ratios())
    evaluation = evaluate(student, spec, splits["eval"], tokenizer, params.eval_batch_size, max_length, reference)
    record = {
        "step": state["step"],
        "phase": "finetune" if finetuning else "search",
        "target": target,
        **{name: float(value.detach()) for name, value in losses.items()},
        "macs_ratio": evaluation.macs_ratio,
        "dev_score": evaluation.metrics[spec.primary_metric],  # task-independent column for the plots
        **evaluation.metrics,
    }
    state["history"].append(record)
    log.info("step %d: %s", state["step"], record)
    rank = selection_rank(evaluation.macs_ratio, record["dev_score"], params.target_macs, params.macs_tolerance)
    if rank is not None and (state["best"] is None or rank > state["best"][0]):
        state["best"] = (rank, _weights(student), evaluation)
        state["cheapest"] = None  # only a search with no checkpoint at the budget needs it
    cheaper = state["cheapest"] is None or evaluation.macs_ratio < state["cheapest"][0]
    if state["best"] is None and not finetuning and params.finetune_epochs > 0 and cheaper:
        state["cheapest"] = (evaluation.macs_ratio, _weights(student), evaluation)


def _trajectory_point(
    step: int, target: float, losses: dict[str, torch.Tensor], masks: PruningMasks, constraint: LagrangianConstraint
) -> dict[str, float]:
    """Where the search stands after ``step``, without an evaluation: its losses, the expected MACs against the
    moving target, the multipliers and each prune layer's expected keep ratio."""
    keep = masks.expected_keep_ratios().detach().tolist()
    return {
        "step": step,
        "target": target,
        **{name: float(value.detach()) for name, value in losses.items()},
        "lambda1": float(constraint.lambda1.detach()),
        "lambda2": float(constraint.lambda2.detach()),
        **{f"keep_{position}": ratio for position, ratio in enumerate(keep)},
    }


def search_end(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The search's last evaluation: where the search alone left the MACs, before any fine-tuning at the budget."""
    return [record for record in history if record["phase"] == "search"][-1]


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def selection_rank(macs_ratio: float, score: float, target: float, tolerance: float) -> tuple[float, bool] | None:
    """Order checkpoints for model selection; None for one over the budget (``target + tolerance``).

    The authors' rule: the best dev score among checkpoints at or under the budget; a tie goes to the one inside
    the band ``target +- tolerance``. Being in the band is only a tie-break: a checkpoint that costs less and
    scores at least as well is the better model whatever the target was.
    """
    if macs_ratio > target + tolerance:
        return None
    return (score, macs_ratio >= target - tolerance)


def _step_losses(
    teacher: TokenPruningBertPreTrainedModel,
    student: TokenPruningBertPreTrainedModel,
    masks: PruningMasks,
    constraint: LagrangianConstraint,
    batch: dict[str, torch.Tensor],
    spec: TaskSpec,
    params: PruneParams,
    dims: EncoderDims,
    target: float,
    rank_weight: float,
    targets: TeacherTargets | None = None,
    budget_lengths: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """A search step's losses; the teacher runs only when its outputs (``targets``) are not given. The expected
    MACs are counted on ``budget_lengths`` (lengths and unprunable counts) when given, else on the batch's."""
    inputs = model_inputs(batch)
    if targets is None:
        targets = teacher_targets(teacher, inputs, True, params.precision)
    sampled = masks.sample()
    with autocast_for(inputs["input_ids"].device, params.precision):
        student_out = student(**inputs, mode="train", masks=sampled, return_scores=params.distill_layers)
    distill = _distillation(student_out, targets, batch, spec, params)
    valid = inputs["attention_mask"].bool().clone()
    valid[:, 0] = False  # [CLS] is never ranked
    teacher_scores = targets.ranking_scores.float()
    rank = sum(
        ranking_distillation_loss(
            student_out.token_scores[layer].float(), teacher_scores, valid, params.top_k, params.rank_scores
        )
        for layer in params.distill_layers
    )
    lengths, fixed = budget_lengths or _real_lengths(inputs, student.config)
    keep_ratios = masks.expected_keep_ratios()
    macs_ratio = expected_macs_ratio(dims, lengths, list(params.prune_layers), keep_ratios, fixed)
    lagrangian = constraint(macs_ratio, target)
    total = distill + lagrangian + rank_weight * rank
    return {"total": total, "distill": distill, "rank": rank, "lagrangian": lagrangian, "expected_macs": macs_ratio}


def _finetune_losses(
    teacher: TokenPruningBertPreTrainedModel,
    student: TokenPruningBertPreTrainedModel,
    batch: dict[str, torch.Tensor],
    spec: TaskSpec,
    params: PruneParams,
    targets: TeacherTargets | None = None,
) -> dict[str, torch.Tensor]:
    """Fine-tuning at frozen keep ratios: the distillation loss of the physically pruned student."""
    inputs = model_inputs(batch)
    if targets is None:
        targets = teacher_targets(teacher, inputs, False, params.precision)
    with autocast_for(inputs["input_ids"].device, params.precision):
        student_out = student(**inputs, mode="physical")
    distill = _distillation(student_out, targets, batch, spec, params)
    return {"total": distill, "distill": distill}


def _distillation(
    student_out: Any,
    teacher_out: Any,
    batch: dict[str, torch.Tensor],
    spec: TaskSpec,
    params: PruneParams,
) -> torch.Tensor:
    """The task loss: soft logit distillation (QA: the mean over start and end, on real positions only), plus
    ``state_distill_weight`` times the MSE between the student's and the teacher's head inputs (the final
    [CLS] state; QA: every real position's final state). Two logits per example are a thin signal for a
    pruned model to recover from; the state the classifier reads has hidden_size numbers. ``teacher_out`` is the
    teacher's output or its ``TeacherTargets``; both sides are taken in float32 (the forwards under autocast).
    """
    live = batch["attention_mask"].bool()
    if spec.is_qa:
        task = (
            sum(
                _soft_distillation(
                    getattr(student_out, name).float().masked_fill(~live, -1e4),
                    getattr(teacher_out, name).float().masked_fill(~live, -1e4),
                    params.distill_temperature,
                )
                for name in ("start_logits", "end_logits")
            )
            / 2
        )
    elif spec.is_regression:  # STS-B: the label itself, as the authors do
        task = F.mse_loss(student_out.logits.float().squeeze(-1), batch["labels"].float())
    else:
        task = _soft_distillation(student_out.logits.float(), teacher_out.logits.float(), params.distill_temperature)
    if params.state_distill_weight == 0:
        return task
    student_states, teacher_states = student_out.head_states.float(), teacher_out.head_states.float()
    if spec.is_qa:
        student_states, teacher_states = student_states[live], teacher_states[live]
    return task + params.state_distill_weight * F.mse_loss(student_states, teacher_states)


def _soft_distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the softened distributions over the last axis, scaled by T^2."""
    return (
        F.kl_div(
            F.log_softmax(student / temperature, dim=-1),
            F.softmax(teacher / temperature, dim=-1),
            reduction="batchmean",
        )
        * temperature**2
    )
