"""Benchmark: what packing the FFN onto the live tokens buys the ToP model, measured against the same model
without it, interleaved in one run (`python -m studies.packing_ablation`, after `dvc repro prune`).

The unpacked variant runs each FFN on the batch padded to its longest survivor; both variants compute the
same logits. Dense FP32 eager is timed too, as the speed-ups'
baseline. Writes `artifacts/metrics/experiments/packing-ablation.json`.
"""

from pathlib import Path

import torch

from pipeline import PREPARED_DIR, PRUNED_DIR, TEACHER_DIR, run_stage
from studies.experiment_file import write_experiment
from top.backbone import check_bert_dir, load_float32, load_tokenizer
from top.bench import Timing, Variant, nested_latency, run_benchmark
from top.data.prepare import load_prepared
from top.params import Params
from top.pruning.model import TokenPruningBertForSequenceClassification


class UnpackedFeedForward(TokenPruningBertForSequenceClassification):
    """The ToP model with each FFN on the padded batch (the physical forward without packing)."""

    def _packed_feed_forward(self, index: int, attended: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        return self.feed_forward_block(index, attended)


def main(params: Params) -> None:
    settings = params.benchmark
    torch.set_num_threads(settings.threads)
    for directory in (TEACHER_DIR, PRUNED_DIR):
        check_bert_dir(Path(directory))
    spec, splits, meta = load_prepared(PREPARED_DIR)
    examples = splits["eval"].shuffle(seed=settings.seed).select(range(min(settings.examples, len(splits["eval"]))))
    models = {
        ("dense", "eager"): load_float32(TokenPruningBertForSequenceClassification, TEACHER_DIR).eval(),
        ("top", "packed"): load_float32(TokenPruningBertForSequenceClassification, PRUNED_DIR).eval(),
        ("top", "unpacked"): load_float32(UnpackedFeedForward, PRUNED_DIR).eval(),
    }
    variants = [
        Variant(family, "fp32", runtime, lambda batch, model=model: model(**batch))
        for (family, runtime), model in models.items()
    ]
    rows = run_benchmark(
        variants,
        examples,
        load_tokenizer(TEACHER_DIR),
        settings.batch_sizes,
        meta["max_length"],
        Timing.of(settings),
    )
    write_experiment(
        "packing-ablation",
        __doc__,
        settings.threads,
        {"task": spec.name, "settings": settings.model_dump(), "latency": nested_latency(rows)},
    )


if __name__ == "__main__":
    run_stage("packing_ablation", main)
