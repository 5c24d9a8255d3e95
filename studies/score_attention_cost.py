"""Benchmark: what grouping the written-out attention of token-ranking layers buys
(`python -m studies.score_attention_cost`); why `attention_with_scores` works in groups.

A layer that ranks tokens needs its attention probabilities, so it cannot run the fused kernel. Written out for
a whole padded batch they are a [B, H, n, n] tensor (100 MB at batch 8 x 512 tokens) that the scaling, masking,
softmax, context product and scoring each pass over in memory. ``attention_with_scores`` instead runs examples
of similar lengths in groups, each cut to its longest example and small enough to stay in cache. This times it
with the default group size, with the whole batch as one group (the batched masked softmax) and with one
example a group, on random queries, keys and values of the backbone's head shape; each shape's lengths are
drawn once (seeded) between a quarter of the maximum and the maximum, which one example has. The variants
alternate call by call. Writes `artifacts/metrics/experiments/score-attention-cost.json`.
"""

import statistics
import time

import torch

from pipeline import run_stage
from studies.experiment_file import write_experiment
from top.backbone import load_bert_config
from top.params import Params
from top.pruning.model import SCORE_GROUP_ELEMENTS, attention_with_scores

CALLS = 15
SHAPES = ((8, 512), (1, 512), (32, 128), (8, 128), (32, 64))  # (batch, max tokens)
VARIANTS = {"grouped": SCORE_GROUP_ELEMENTS, "whole_batch": float("inf"), "one_example_a_group": 0}


def _inputs(batch: int, tokens: int, heads: int, head_size: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(batch * 1000 + tokens)
    lengths = torch.randint(tokens // 4, tokens + 1, (batch,), generator=generator)
    lengths[0] = tokens
    keys = torch.arange(tokens)[None, :] < lengths[:, None]
    query, key, value = (torch.randn(batch, heads, tokens, head_size, generator=generator) for _ in range(3))
    return query, key, value, keys


def main(params: Params) -> None:
    threads = params.benchmark.threads
    torch.set_num_threads(threads)
    config = load_bert_config(params.model.backbone)
    heads, head_size = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    rows = []
    for batch, tokens in SHAPES:
        query, key, value, keys = _inputs(batch, tokens, heads, head_size)
        seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
        with torch.inference_mode():
            for call in range(CALLS + 2):  # the first two calls of each are warm-ups
                for name, group_elements in VARIANTS.items():
                    started = time.perf_counter()
                    attention_with_scores(query, key, keys, value=value, group_elements=group_elements)
                    if call >= 2:
                        seconds[name].append(time.perf_counter() - started)
        medians = {name: round(statistics.median(values) * 1000, 2) for name, values in seconds.items()}
        rows.append(
            {
                "batch": batch,
                "max_tokens": tokens,
                "mean_tokens": round(float(keys.sum(dim=1).float().mean()), 1),
                "median_ms": medians,
                "grouped_speedup_over_whole_batch": round(medians["whole_batch"] / medians["grouped"], 2),
            }
        )
    write_experiment(
        "score-attention-cost",
        __doc__,
        threads,
        {"backbone": params.model.backbone, "heads": heads, "head_size": head_size, "calls": CALLS, "shapes": rows},
    )


if __name__ == "__main__":
    run_stage("score_attention_cost", main)
