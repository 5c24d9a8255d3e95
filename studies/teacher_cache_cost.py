"""Benchmark: what caching the frozen teacher's outputs saves a ToP search step on the prepared task
(`python -m studies.teacher_cache_cost [--prepared-dir DIR] [--teacher-dir DIR]`); why `prune.cache_teacher_outputs`
is on.

Without the cache a search step runs the teacher (a no-grad forward that writes its last layer's attention out for
the ranking) beside the student's forward and backward; with it, the step looks the teacher's outputs up by
example index. Times the prune stage's own search step (mask sample, student forward in train mode, losses,
backward, AdamW update) both ways on the same shuffled batches of a seeded draw of the training split, alternating
step by step so that a slow spell of the machine hits both, and the one-off cost of computing the cache, per
example and extrapolated to the whole split. The prepared task and its max_length are those of data/prepared
(MRPC by default; prepare 20 Newsgroups at 512 tokens into another directory for the long-input case), the
teacher is artifacts/teacher unless --teacher-dir names another, and threads are benchmark.threads. Writes
`artifacts/metrics/experiments/teacher-cache-cost-<task>-<max_length>.json`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from pipeline import PREPARED_DIR, TEACHER_DIR, run_stage
from studies.experiment_file import write_experiment
from top.backbone import check_task_head, load_tokenizer
from top.data.batches import batch_loader, with_example_index
from top.data.prepare import load_prepared
from top.optim import adamw
from top.params import Params
from top.pruning.l0 import LagrangianConstraint, PruningMasks
from top.pruning.macs import EncoderDims
from top.pruning.teacher_cache import compute_teacher_outputs, output_names
from top.pruning.train import _step_losses, load_models

STEPS = 10
EXAMPLES = 512


def measure(
    params: Params,
    prepared_dir: str | Path = PREPARED_DIR,
    teacher_dir: str | Path = TEACHER_DIR,
    steps: int = STEPS,
    examples: int = EXAMPLES,
) -> Path:
    """Time ``steps`` search steps each way (after one warm-up each) on a draw of ``examples`` training rows."""
    threads = params.benchmark.threads
    torch.set_num_threads(threads)
    prune = params.prune
    spec, splits, meta = load_prepared(prepared_dir)
    check_task_head(Path(teacher_dir), spec)
    tokenizer = load_tokenizer(meta["backbone"])
    train = splits["train"]
    draw = with_example_index(train.shuffle(seed=prune.seed).select(range(min(examples, len(train)))))
    teacher, student = load_models(teacher_dir, prune)
    device = torch.device("cpu")
    names = output_names(spec, prune.state_distill_weight > 0)

    started = time.perf_counter()
    cached = compute_teacher_outputs(
        teacher, draw, tokenizer, spec, names, prune.eval_batch_size, device, prune.precision
    )
    cache_seconds = time.perf_counter() - started

    masks = PruningMasks(len(prune.prune_layers), prune.bins, gates_forced_on=prune.gates == "forced_on")
    constraint = LagrangianConstraint()
    dims = EncoderDims.from_config(student.config)
    optimizer = adamw([parameter for parameter in student.parameters() if parameter.requires_grad], 1e-5)
    student.train()
    seconds: dict[str, list[float]] = {"live_teacher": [], "cached_teacher": []}
    tokens = []
    batches = iter(())
    for step in range(steps + 1):  # the first step of each is a warm-up
        batch = next(batches, None)
        if batch is None:
            batches = iter(batch_loader(draw, tokenizer, prune.batch_size, shuffle=True, seed=prune.seed + step))
            batch = next(batches)
        tokens.append(int(batch["attention_mask"].sum()))
        for name in seconds:
            begun = time.perf_counter()
            targets = cached.targets(batch, device) if name == "cached_teacher" else None
            losses = _step_losses(
                teacher, student, masks, constraint, batch, spec, prune, dims, 0.5, prune.rank_loss_weight, targets
            )
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            if step:
                seconds[name].append(time.perf_counter() - begun)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    saved = medians["live_teacher"] - medians["cached_teacher"]
    steps_per_epoch = math.ceil(len(train) / prune.batch_size)
    per_example = cache_seconds / len(draw)
    return write_experiment(
        f"teacher-cache-cost-{spec.name}-{meta['max_length']}",
        __doc__,
        threads,
        {
            "task": spec.name,
            "max_length": meta["max_length"],
            "train_examples": len(train),
            "timed_examples": len(draw),
            "batch_size": prune.batch_size,
            "mean_real_tokens_per_batch": round(statistics.mean(tokens), 1),
            "steps": steps,
            "median_step_seconds": {name: round(value, 4) for name, value in medians.items()},
            "step_time_saved_share": round(saved / medians["live_teacher"], 3),
            "speedup": round(medians["live_teacher"] / medians["cached_teacher"], 3),
            "cache_seconds_per_example": round(per_example, 6),
            "cache_seconds_whole_split_estimate": round(per_example * len(train), 2),
            "search_epoch_seconds_saved_estimate": round(saved * steps_per_epoch, 1),
            "teacher_outputs": names,
            "teacher_dir": str(teacher_dir),
        },
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepared-dir", default=PREPARED_DIR, help="a prepared task (the prepare stage's output)")
    parser.add_argument("--teacher-dir", default=TEACHER_DIR, help="a fine-tuned teacher for that task")
    parser.add_argument("--steps", type=int, default=STEPS, help="timed search steps per variant")
    parser.add_argument("--examples", type=int, default=EXAMPLES, help="training rows drawn for the timing")
    args = parser.parse_args(argv)
    run_stage(
        "teacher_cache_cost",
        lambda params: measure(params, args.prepared_dir, args.teacher_dir, args.steps, args.examples),
    )


if __name__ == "__main__":
    main()
