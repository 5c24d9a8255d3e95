"""Benchmark: what writing attention out in every layer would cost a ToP search step on CPU
(`python -m studies.top_step_cost`); why only the distilled layers' scores carry gradients.

A search step needs attention probabilities in three places: the student's distilled layers (the ranking loss
trains them), the layers whose scores rank the next prune layer's tokens (no gradient: a rank is a sort), and the
teacher's last layer. Training runs all remaining layers through the fused kernel, and the ranking layers
recompute their probabilities without gradient. Times the prune stage's own search step (forward of both models, losses,
backward, AdamW update) with the models asked for every layer's scores (every layer computes softmax(QK^T)
explicitly and keeps it for the backward pass) and with what training asks, alternating call by call so that a
slow spell of the machine hits both. Writes `artifacts/metrics/experiments/top-step-cost.json`.
"""

import time
from typing import Any

import torch

from pipeline import run_stage
from studies.experiment_file import interleaved_medians, write_experiment
from top.backbone import resolve_backbone
from top.data.tasks import resolve_task
from top.optim import adamw
from top.params import Params, PruneParams
from top.pruning.l0 import LagrangianConstraint, PruningMasks
from top.pruning.macs import EncoderDims
from top.pruning.train import _step_losses, load_models

CALLS = 3
SHAPES = ((16, 512), (32, 128))  # (batch, tokens)
ATTENTION_DROPOUTS = (0.1, 0.0)  # BERT's own, and teacher.attention_dropout: 0.0 (which the student inherits)


class _EveryLayerWrittenOut(torch.nn.Module):
    """A model called with every layer's scores requested: every layer's attention written out, with gradients."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, **inputs: Any) -> Any:
        return self.model(**(inputs | {"return_scores": True}))


def _search_step(
    models: tuple[torch.nn.Module, torch.nn.Module],
    masks: PruningMasks,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    params: PruneParams,
) -> float:
    teacher, student = models
    constraint = LagrangianConstraint()
    dims = EncoderDims.from_config(student.config)
    spec = resolve_task("mrpc", {})  # any two-class task: only its head shape matters here
    started = time.perf_counter()
    losses = _step_losses(teacher, student, masks, constraint, batch, spec, params, dims, 0.5, params.rank_loss_weight)
    losses["total"].backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - started


def main(params: Params) -> None:
    threads = params.benchmark.threads
    torch.set_num_threads(threads)
    prune = params.prune
    teacher, student = load_models(resolve_backbone(params.model.backbone), prune)
    student.train()
    masks = PruningMasks(len(prune.prune_layers), prune.bins, gates_forced_on=prune.gates == "forced_on")
    optimizer = adamw(student.parameters(), learning_rate=1e-5)
    variants = {
        "every_layer_written_out": (_EveryLayerWrittenOut(teacher), _EveryLayerWrittenOut(student)),
        "scores_where_needed": (teacher, student),
    }
    rows = []
    for attention_dropout in ATTENTION_DROPOUTS:
        for layer in student.bert.encoder.layer:
            layer.attention.self.dropout.p = attention_dropout
        for batch_size, tokens in SHAPES:
            batch = {
                "input_ids": torch.randint(1000, 5000, (batch_size, tokens)),
                "attention_mask": torch.ones(batch_size, tokens, dtype=torch.long),
                "labels": torch.randint(0, 2, (batch_size,)),
            }
            steps = {
                name: lambda models=models, batch=batch: _search_step(models, masks, optimizer, batch, prune)
                for name, models in variants.items()
            }
            medians = interleaved_medians(steps, CALLS)
            rows.append(
                {
                    "attention_dropout": attention_dropout,
                    "batch": batch_size,
                    "tokens": tokens,
                    "median_step_seconds": medians,
                    "speedup": round(medians["every_layer_written_out"] / medians["scores_where_needed"], 2),
                }
            )
    write_experiment(
        "top-step-cost",
        __doc__,
        threads,
        {
            "backbone": params.model.backbone,
            "prune_layers": prune.prune_layers,
            "distill_layers": prune.distill_layers,
            "calls": CALLS,
            "steps": rows,
        },
    )


if __name__ == "__main__":
    run_stage("top_step_cost", main)
