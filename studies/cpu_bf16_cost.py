"""Benchmark: what bfloat16 autocast saves a MiniLM training step on this CPU (`python -m studies.cpu_bf16_cost`);
why the training stages offer ``precision: bfloat16`` on the CPU (their CPU default stays float32).

On cores that multiply bfloat16 natively (Intel AMX, AVX512-BF16) autocast runs the matrix products in bfloat16
at up to several times the float32 rate, while norms, softmax and the losses stay float32. Times a full training
step (forward, backward, fused AdamW update) of the backbone with a sequence-classification head in float32 and
under bfloat16 autocast, the two alternating call by call so that a slow spell of the machine hits both, at a
long-document shape and two short ones, with attention dropout off (as the long-document runs train). Writes
`artifacts/metrics/experiments/cpu-bf16-cost.json`, or `cpu-bf16-cost-emulated.json` on a CPU without bfloat16
matrix instructions, where autocast has to emulate them.
"""

import torch
from transformers import BertForSequenceClassification

from pipeline import run_stage
from studies.dropout_cost import SHAPES, random_batch, training_step
from studies.experiment_file import interleaved_medians, write_experiment
from top.backbone import resolve_backbone
from top.cpu import has_bfloat16_matmul
from top.optim import adamw
from top.params import Params

CALLS = 6
PRECISIONS = ("float32", "bfloat16")


def main(params: Params) -> None:
    threads = params.benchmark.threads
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    backbone = resolve_backbone(params.model.backbone)
    model = BertForSequenceClassification.from_pretrained(backbone, num_labels=2, attention_probs_dropout_prob=0.0)
    model.train()
    optimizer = adamw(model.parameters(), learning_rate=1e-5)
    rows = []
    for batch_size, tokens in SHAPES:
        batch = random_batch(batch_size, tokens)
        steps = {
            precision: lambda precision=precision, batch=batch: training_step(model, optimizer, batch, precision)
            for precision in PRECISIONS
        }
        medians = interleaved_medians(steps, CALLS)
        rows.append(
            {
                "batch": batch_size,
                "tokens": tokens,
                "median_step_seconds": medians,
                "speedup_bfloat16": round(medians["float32"] / medians["bfloat16"], 2),
            }
        )
    name = "cpu-bf16-cost" if has_bfloat16_matmul() else "cpu-bf16-cost-emulated"
    write_experiment(name, __doc__, threads, {"backbone": params.model.backbone, "calls": CALLS, "steps": rows})


if __name__ == "__main__":
    run_stage("cpu_bf16_cost", main)
