"""Experiment: how much the ToP model's INT8 dev score depends on the calibration draw, the activation-range
algorithm and SmoothQuant (`python -m studies.int8_calibration [--draws-only]`, after `dvc repro prune`).

The quantize stage calibrates on one seeded draw of training batches, and the INT8 score moves from draw to
draw, so one stage run says little about an algorithm. This runs the stage's own quantize and
evaluation for every combination of three draws (quantize.seed and the next two), both algorithms and SmoothQuant
off/on (alpha 0.5), and writes `artifacts/metrics/experiments/int8-calibration-<task>.json`, with the input range
of every linear in the FP32 model on the first draw (largest channel maximum against the median channel's): the
outlier channels that SmoothQuant is meant for. With `--draws-only` it runs the three draws at the quantize params'
own algorithm and smoothing, and writes `int8-draws-<task>.json`: the INT8 loss of the pipeline's setting as a mean
over draws.
"""

import argparse
import itertools
import tempfile
from pathlib import Path

import datasets
import numpy as np
import torch

from pipeline import PREPARED_DIR, PRUNED_DIR, run_stage
from pipeline.quantize import quantize_models
from studies.experiment_file import write_experiment
from top.backbone import load_float32, load_tokenizer
from top.data.prepare import load_prepared
from top.params import INT8_ACTIVATION_ALGORITHMS, Params, QuantizeParams
from top.pruning.model import pruning_model_class
from top.quantize import calibration_batches
from top.smooth_quant import record_input_maxima

DRAWS = 3
SMOOTHING = (None, 0.5)


def study(params: Params, draws_only: bool) -> None:
    """Quantize and score the ToP model per draw and setting; write the record."""
    spec, splits, _ = load_prepared(PREPARED_DIR)
    own = (params.quantize.activation_algorithm, params.quantize.smoothing_alpha)
    combinations = [own] if draws_only else list(itertools.product(INT8_ACTIVATION_ALGORITHMS, SMOOTHING))
    runs = []
    for offset, (algorithm, alpha) in itertools.product(range(DRAWS), combinations):
        settings = params.quantize.model_copy(
            update={
                "enabled": True,
                "seed": params.quantize.seed + offset,
                "activation_algorithm": algorithm,
                "smoothing_alpha": alpha,
            }
        )
        with tempfile.TemporaryDirectory() as scratch:
            result = quantize_models(PREPARED_DIR, {"top": Path(PRUNED_DIR)}, settings, Path(scratch) / "int8")["top"]
        runs.append({"seed": settings.seed, **result})
    summary = {}
    for algorithm, alpha in combinations:
        chosen = [run for run in runs if run["activation_algorithm"] == algorithm and run["smoothing_alpha"] == alpha]
        scores = [run["int8"][spec.primary_metric] for run in chosen]
        agreement = [run["prediction_agreement"] for run in chosen]
        summary[f"{algorithm}, smoothing {alpha}"] = {
            f"int8_{spec.primary_metric}_mean": round(float(np.mean(scores)), 4),
            f"int8_{spec.primary_metric}_min": round(min(scores), 4),
            f"int8_{spec.primary_metric}_max": round(max(scores), 4),
            "prediction_agreement_mean": round(float(np.mean(agreement)), 4),
            "delta_points_mean": round(float(np.mean([run["delta_points"] for run in chosen])), 3),
            "delta_points_std": round(float(np.std([run["delta_points"] for run in chosen], ddof=1)), 3),
        }
    fields = {"task": spec.name, "summary": summary, "runs": runs}
    if not draws_only:
        fields["linear_input_ranges"] = linear_input_ranges(splits["train"], params.quantize)
    name = f"int8-draws-{spec.name}" if draws_only else f"int8-calibration-{spec.name}"
    write_experiment(name, __doc__, torch.get_num_threads(), fields)


def linear_input_ranges(train: datasets.Dataset, params: QuantizeParams) -> dict[str, dict[str, float]]:
    """Per linear of the FP32 ToP model: the largest and the median per-channel max |input| on the calibration draw."""
    model = load_float32(pruning_model_class(PRUNED_DIR), PRUNED_DIR).eval()
    batches = calibration_batches(train, load_tokenizer(PRUNED_DIR), params)
    maxima = record_input_maxima(model.bert.encoder.layer, lambda: [model(**batch) for batch in batches])
    return {
        f"layer{index}.{name}": {
            "max_channel": round(float(channels.max()), 3),
            "median_channel": round(float(channels.median()), 3),
        }
        for index, layer in enumerate(maxima)
        for name, channels in layer.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws-only", action="store_true", help="only the quantize params' own setting")
    args = parser.parse_args(argv)
    run_stage("int8_calibration", lambda params: study(params, args.draws_only))


if __name__ == "__main__":
    main()
