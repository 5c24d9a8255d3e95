"""Stage `quantize`: static INT8 (Intel Neural Compressor) of the teacher and the ToP model, each evaluated next to
its FP32 source; with `quantize.enabled` false, an output that says so."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pipeline import INT8_DIR, INT8_SOURCES, PREPARED_DIR, metrics_path, run_stage
from top.atomic import atomic_directory, write_json
from top.backbone import check_task_head, load_float32, load_tokenizer
from top.data.prepare import load_prepared
from top.evaluate import agreement_record, evaluate
from top.params import Params, QuantizeParams
from top.pruning.model import pruning_model_class
from top.qa.evaluate import QAReference
from top.quantize import calibration_batches, quantize_int8, save_int8

log = logging.getLogger(__name__)

DISABLED_NOTE = "DISABLED"


def quantize_models(
    prepared_dir: str | Path, sources: dict[str, Path], params: QuantizeParams, output_root: str | Path
) -> dict[str, Any]:
    """INT8 of every model in ``sources`` (name -> FP32 model dir) under ``output_root/<name>``, with metrics."""
    output_root = Path(output_root)
    if not params.enabled:
        with atomic_directory(output_root) as staging:  # DVC needs the output; it says why it is empty
            (staging / DISABLED_NOTE).write_text("quantize.enabled is false in params.yaml\n", encoding="utf-8")
        return {"enabled": False}
    spec, splits, meta = load_prepared(prepared_dir)
    for source in sources.values():
        check_task_head(source, spec)
    max_length = meta["max_length"]
    reference = QAReference.from_prepared(splits, meta)
    results: dict[str, Any] = {"enabled": True, "task": spec.name, "metric": spec.primary_metric}
    with atomic_directory(output_root) as staging:
        for name, source in sources.items():
            tokenizer = load_tokenizer(str(source))
            fp32 = load_float32(pruning_model_class(source), source).eval()
            calibration = calibration_batches(splits["train"], tokenizer, params)
            started = time.perf_counter()
            int8, examples = quantize_int8(fp32, calibration, params.activation_algorithm, params.smoothing_alpha)
            seconds = time.perf_counter() - started
            save_int8(int8, examples, staging / name)
            tokenizer.save_pretrained(str(staging / name))
            fp32_eval, int8_eval = (
                evaluate(model, spec, splits["eval"], tokenizer, params.eval_batch_size, max_length, reference)
                for model in (fp32, int8)
            )
            results[name] = {
                "fp32": fp32_eval.metrics,
                "int8": int8_eval.metrics,
                "delta_points": round(
                    100 * (int8_eval.metrics[spec.primary_metric] - fp32_eval.metrics[spec.primary_metric]), 3
                ),
                **agreement_record(spec, fp32_eval.predictions, int8_eval.predictions),
                "macs_ratio_real_lengths": round(int8_eval.macs_ratio, 4),
                "quantize_seconds": round(seconds, 2),
                "calibration_examples": sum(len(batch["input_ids"]) for batch in calibration),
                "activation_algorithm": params.activation_algorithm,
                "smoothing_alpha": params.smoothing_alpha,
            }
            log.info("%s: %s", name, results[name])
    return results


def main(params: Params) -> None:
    write_json(metrics_path("quantize"), quantize_models(PREPARED_DIR, INT8_SOURCES, params.quantize, INT8_DIR))


if __name__ == "__main__":
    run_stage("quantize", main)
