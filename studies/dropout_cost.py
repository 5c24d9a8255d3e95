"""Benchmark: what the attention-probability dropout costs a MiniLM training step on CPU
(`python -m studies.dropout_cost`); why `teacher.attention_dropout` exists.

BERT drops 10% of its attention probabilities in training. The mask is one random draw per (example, head, query,
key), so its cost grows with the square of the length, and on CPU random draws are slow: at 512 tokens this,
not the matrix products, can dominate a step. Times a full training step (forward, backward, fused AdamW update)
of the backbone with its own dropout and with attention dropout 0, the two models alternating call by call so
that a slow spell of the machine hits both. Writes `artifacts/metrics/experiments/dropout-cost.json`.
"""

import time

import torch
from transformers import BertForSequenceClassification

from pipeline import run_stage
from studies.experiment_file import interleaved_medians, write_experiment
from top.backbone import resolve_backbone
from top.device import autocast_for
from top.optim import adamw
from top.params import Params, Precision

CALLS = 6
SHAPES = ((16, 512), (32, 128), (32, 64))  # (batch, tokens)


def random_batch(batch_size: int, tokens: int) -> dict[str, torch.Tensor]:
    """Random token ids and binary labels of one timed shape (the step's cost does not depend on the text)."""
    return {"input_ids": torch.randint(1000, 5000, (batch_size, tokens)), "labels": torch.randint(0, 2, (batch_size,))}


def training_step(
    model: BertForSequenceClassification, optimizer: torch.optim.Optimizer, batch: dict, precision: Precision = "auto"
) -> float:
    """Seconds of one training step: forward (under the CPU autocast of ``precision``), backward, AdamW update."""
    started = time.perf_counter()
    with autocast_for("cpu", precision):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - started


def main(params: Params) -> None:
    threads = params.benchmark.threads
    torch.set_num_threads(threads)
    backbone = resolve_backbone(params.model.backbone)
    variants = {}
    for name, overrides in (("backbone", {}), ("off", {"attention_probs_dropout_prob": 0.0})):
        torch.manual_seed(0)
        model = BertForSequenceClassification.from_pretrained(backbone, num_labels=2, **overrides).train()
        variants[name] = (model, adamw(model.parameters(), learning_rate=1e-5))
    backbone_dropout = variants["backbone"][0].config.attention_probs_dropout_prob
    rows = []
    for batch_size, tokens in SHAPES:
        batch = random_batch(batch_size, tokens)
        steps = {
            name: lambda model=model, optimizer=optimizer, batch=batch: training_step(model, optimizer, batch)
            for name, (model, optimizer) in variants.items()
        }
        medians = interleaved_medians(steps, CALLS)
        rows.append(
            {
                "batch": batch_size,
                "tokens": tokens,
                "median_step_seconds": {
                    f"attention_dropout_{backbone_dropout}": medians["backbone"],
                    "attention_dropout_0.0": medians["off"],
                },
                "speedup_without": round(medians["backbone"] / medians["off"], 2),
            }
        )
    write_experiment(
        "dropout-cost", __doc__, threads, {"backbone": params.model.backbone, "calls": CALLS, "steps": rows}
    )


if __name__ == "__main__":
    run_stage("dropout_cost", main)
