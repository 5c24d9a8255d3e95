"""Benchmark: the fused AdamW kernel against PyTorch's default implementation on one MiniLM training step
(`python -m studies.optimizer_benchmark`); why `top.optim.adamw` is fused.

Times a teacher-sized step (batch 16 x 16 tokens, the backbone with a 2-class head) split into forward + backward
and the optimizer update, the two implementations alternating call by call so that a slow spell of the machine
hits both. Writes `artifacts/metrics/experiments/optimizer-step.json`.
"""

import statistics
import time

import torch
from transformers import BertForSequenceClassification

from pipeline import run_stage
from studies.experiment_file import write_experiment
from top.backbone import resolve_backbone
from top.params import Params

CALLS = 20
BATCH, TOKENS = 16, 16


def main(params: Params) -> None:
    threads = params.benchmark.threads
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(resolve_backbone(params.model.backbone), num_labels=2)
    inputs = torch.randint(1000, 5000, (BATCH, TOKENS))
    labels = torch.randint(0, 2, (BATCH,))
    optimizers = {
        name: torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused)
        for name, fused in (("default", False), ("fused", True))
    }
    seconds: dict[str, list[float]] = {"forward_backward": [], **{name: [] for name in optimizers}}
    for call in range(CALLS + 1):  # the first call of each is a warm-up
        started = time.perf_counter()
        model(input_ids=inputs, labels=labels).loss.backward()
        forward_backward = time.perf_counter() - started
        for name, optimizer in optimizers.items():
            started = time.perf_counter()
            optimizer.step()
            if call:
                seconds[name].append(time.perf_counter() - started)
        if call:
            seconds["forward_backward"].append(forward_backward)
        model.zero_grad(set_to_none=False)
    medians = {name: round(statistics.median(values), 4) for name, values in seconds.items()}
    write_experiment(
        "optimizer-step",
        __doc__,
        threads,
        {
            "backbone": params.model.backbone,
            "batch": BATCH,
            "tokens": TOKENS,
            "calls": CALLS,
            "median_seconds": medians,
            "update_speedup": round(medians["default"] / medians["fused"], 2),
        },
    )


if __name__ == "__main__":
    run_stage("optimizer_benchmark", main)
