"""Training the supernet (width, then width x depth, with distillation, then optionally plain fine-tuning) and
its width gates.

Supernet stages follow the method: every optimizer step runs each subnet of the stage (widths largest first,
for each depth) on the same batch, accumulates the gradients, clips once and steps once. The distilling
stages' loss is soft cross-entropy against the full teacher's logits (MSE for regression) plus
``hidden_weight`` times the MSE between hidden states (embedding output included; a depth-d student's state i
is matched to the teacher's state floor(i * L / d)), averaged over real tokens; the fine-tuning stage's loss is
the task loss on the labels alone. In the width stage, layer-wise grafting runs every
1/``grafts_per_epoch`` epoch except in the last epoch, after the optimizer step, with importance measured on a
held-out slice of the training data.
The forwards run under autocast to ``flex.precision`` (bf16 on CUDA by default), the losses in float32.

The gates see a frozen supernet, so their inputs are computed once: the pooled state entering every layer when
the whole model runs at each gate width, and each example's label, the smallest width whose prediction is
right (the widest when none is). Each example then trains the gates only on the states of its label's width,
with class weights against the imbalance and Gumbel-softmax noise whose temperature anneals to 0.5.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from top.checkpoint import restore_training_state, save_training_state
from top.data.batches import batch_loader, model_inputs
from top.device import autocast_for
from top.flex.grafting import graft
from top.flex.importance import unit_importance
from top.flex.supernet import FlexibleBertForSequenceClassification
from top.optim import adamw
from top.params import Precision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupernetStage:
    name: str
    widths: list[float]
    depths: list[int]
    epochs: float
    learning_rate: float
    hidden_weight: float
    graft_alpha: float | None  # None: no grafting
    grafts_per_epoch: int
    distill: bool = True  # False: the task loss on the labels, no teacher (the method's final fine-tuning)


@dataclass(frozen=True)
class Optimization:
    batch_size: int
    seed: int
    save_steps: int
    precision: Precision


def distillation_loss(
    student_logits: torch.Tensor,
    student_states: Sequence[torch.Tensor],
    teacher_logits: torch.Tensor,
    teacher_states: Sequence[torch.Tensor],
    attention_mask: torch.Tensor,
    hidden_weight: float,
    regression: bool,
) -> torch.Tensor:
    if regression:
        logit_loss = F.mse_loss(student_logits, teacher_logits)
    else:
        logit_loss = -(teacher_logits.softmax(dim=-1) * student_logits.log_softmax(dim=-1)).sum(dim=-1).mean()
    if hidden_weight == 0:
        return logit_loss
    depth, layers = len(student_states) - 1, len(teacher_states) - 1
    live = attention_mask[:, :, None].to(student_logits.dtype)
    hidden = sum(
        (((state - teacher_states[index * layers // depth]) ** 2) * live).sum() / (live.sum() * state.shape[-1])
        for index, state in enumerate(student_states)
    )
    return logit_loss + hidden_weight * hidden


def task_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """Cross-entropy on the labels (MSE for regression)."""
    if regression:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


def train_supernet(
    student: FlexibleBertForSequenceClassification,
    teacher: FlexibleBertForSequenceClassification,
    train_split: datasets.Dataset,
    importance_split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    stage: SupernetStage,
    optimization: Optimization,
    regression: bool,
    checkpoint_file: Path,
) -> dict[str, Any]:
    """Train ``student`` in place (resuming from ``checkpoint_file`` if present); return a summary. ``teacher``
    is not run when the stage does not distil."""
    device = student.classifier.weight.device
    teacher.eval()
    torch.manual_seed(optimization.seed)
    optimizer = adamw(student.parameters(), stage.learning_rate)
    batches_per_epoch = len(batch_loader(train_split, tokenizer, optimization.batch_size, shuffle=False, seed=0))
    total_steps = max(1, math.ceil(batches_per_epoch * stage.epochs))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / total_steps)
    graft_every = max(1, batches_per_epoch // max(1, stage.grafts_per_epoch))
    graft_until = batches_per_epoch * max(0, math.ceil(stage.epochs) - 1)
    modules = {"student": student, "optimizer": optimizer, "schedule": schedule}
    state: dict[str, Any] = {"step": 0, "grafts": 0, "losses": []}
    if checkpoint_file.is_file():
        state = restore_training_state(checkpoint_file, modules)
        log.info("%s: resuming from step %d", stage.name, state["step"])
    started = time.perf_counter()
    progress = tqdm(total=total_steps, initial=state["step"], desc=f"flex {stage.name}")
    while state["step"] < total_steps:
        epoch, skip = divmod(state["step"], batches_per_epoch)
        loader = batch_loader(
            train_split,
            tokenizer,
            optimization.batch_size,
            shuffle=True,
            seed=optimization.seed + epoch,
            pin_memory=device.type == "cuda",
        )
        for position, batch in enumerate(loader):
            if position < skip:
                continue
            if state["step"] >= total_steps:
                break
            student.train()
            inputs = model_inputs(batch, device)
            if stage.distill:
                with torch.no_grad(), autocast_for(device, optimization.precision):
                    target = teacher(**inputs, output_hidden_states=True)
                teacher_logits = target.logits.float()
                teacher_states = [state.float() for state in target.hidden_states]
            else:
                labels = batch["labels"].to(device)
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for depth in stage.depths:
                for width in stage.widths:
                    with autocast_for(device, optimization.precision):
                        out = student(**inputs, width=width, depth=depth, output_hidden_states=stage.distill)
                    if stage.distill:
                        loss = distillation_loss(
                            out.logits.float(),
                            [state.float() for state in out.hidden_states],
                            teacher_logits,
                            teacher_states,
                            inputs["attention_mask"],
                            stage.hidden_weight,
                            regression,
                        )
                    else:
                        loss = task_loss(out.logits.float(), labels, regression)
                    loss.backward()
                    step_loss += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            state["step"] += 1
            step = state["step"]
            state["losses"].append(step_loss)
            progress.update(1)
            progress.set_postfix(loss=f"{step_loss:.3f}")
            if stage.graft_alpha is not None and step % graft_every == 0 and step <= graft_until:
                importance = unit_importance(
                    student, batch_loader(importance_split, tokenizer, 64, shuffle=False, seed=0), regression
                )
                graft(student, importance, stage.graft_alpha)
                state["grafts"] += 1
            if step % optimization.save_steps == 0:
                save_training_state(checkpoint_file, modules, state)
    progress.close()
    return {
        "steps": state["step"],
        "grafts": state["grafts"],
        "final_loss": state["losses"][-1] if state["losses"] else None,
        "train_seconds": round(time.perf_counter() - started, 2),
    }


def frozen_copy(model: FlexibleBertForSequenceClassification) -> FlexibleBertForSequenceClassification:
    """A fixed teacher for the next stage: an independent copy with gradients off."""
    teacher = copy.deepcopy(model).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


@dataclass
class GateData:
    states: torch.Tensor  # [N, widths, layers, hidden]: pooled state entering each layer, whole model at each width
    labels: torch.Tensor  # [N]: index of the smallest width that predicts right (the widest if none does)


@torch.no_grad()
def gate_data(
    model: FlexibleBertForSequenceClassification,
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    gate_widths: Sequence[float],
    batch_size: int,
    regression: bool,
) -> GateData:
    model.eval()
    device = model.classifier.weight.device
    states, labels = [], []
    for batch in batch_loader(split, tokenizer, batch_size, shuffle=False, seed=0):
        inputs = model_inputs(batch, device)
        keys = inputs["attention_mask"].bool()
        per_width, correct = [], []
        for width in gate_widths:
            out = model(**inputs, width=width, output_hidden_states=True)
            entering = [model.prefix_pool(state, keys) for state in out.hidden_states[:-1]]
            per_width.append(torch.stack(entering, dim=1).cpu())
            if regression:
                correct.append((out.logits.squeeze(-1).cpu() - batch["labels"]).abs() < 0.5)
            else:
                correct.append(out.logits.argmax(dim=-1).cpu() == batch["labels"])
        right = torch.stack(correct, dim=1)
        right[:, -1] = True  # the widest width is the fallback label
        labels.append(right.float().argmax(dim=1))
        states.append(torch.stack(per_width, dim=1))
    return GateData(states=torch.cat(states), labels=torch.cat(labels))


def class_weights(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Inverse label frequency (N / (K * count)); a class no example has gets weight 0."""
    counts = torch.bincount(labels, minlength=classes).float()
    return torch.where(counts > 0, labels.numel() / (classes * counts.clamp(min=1)), torch.zeros_like(counts))


def train_gates(
    model: FlexibleBertForSequenceClassification,
    data: GateData,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
) -> dict[str, Any]:
    """Fit ``model.gates`` (the only parameters trained) on precomputed ``data``; return a summary."""
    generator = torch.Generator().manual_seed(seed)
    classes = data.states.shape[1]
    weights = class_weights(data.labels, classes)
    gates = model.gates.cpu().train()
    optimizer = adamw(gates.parameters(), learning_rate, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(data.labels) / batch_size)
    total = max(1, epochs * steps_per_epoch)
    rate = -math.log(0.3) / total
    started, step, loss = time.perf_counter(), 0, torch.tensor(0.0)
    for _ in tqdm(range(epochs), desc="flex gates"):
        for rows in torch.randperm(len(data.labels), generator=generator).split(batch_size):
            temperature = max(0.5, math.exp(-rate * step))
            labels = data.labels[rows]
            loss = torch.zeros(())
            for width_index in range(classes):
                chosen = (labels == width_index).float() * weights[width_index]
                for layer, gate in enumerate(gates):
                    logits = gate(data.states[rows, width_index, layer])
                    noisy = F.gumbel_softmax(logits, tau=temperature, hard=False).clamp(min=1e-9).log()
                    nll = F.nll_loss(noisy, labels, reduction="none")
                    loss = loss + (nll * chosen).sum() / (len(rows) * len(gates))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    model.gates.to(model.classifier.weight.device).eval()
    with torch.no_grad():
        accuracy = [
            float(
                (gate(data.states[torch.arange(len(data.labels)), data.labels, layer]).argmax(-1) == data.labels)
                .float()
                .mean()
            )
            for layer, gate in enumerate(gates)
        ]
    histogram = torch.bincount(data.labels, minlength=classes).tolist()
    return {
        "steps": step,
        "final_loss": float(loss.detach()),
        "train_seconds": round(time.perf_counter() - started, 2),
        "label_histogram": histogram,
        "class_weights": [round(float(weight), 4) for weight in weights],
        "train_accuracy_per_gate": [round(value, 4) for value in accuracy],
        "majority_share": round(max(histogram) / max(1, sum(histogram)), 4),
    }
