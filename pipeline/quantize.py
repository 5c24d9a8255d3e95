"""Stage `quantize`: static INT8 (Intel Neural Compressor) of the teacher and the ToP model, or a no-op note."""

from pathlib import Path

from pipeline.prepare import PREPARED_DIR
from pipeline.prune import PRUNED_DIR
from pipeline.stage import metrics_path, run_stage
from pipeline.teacher import TEACHER_DIR
from top.atomic import write_json
from top.params import Params
from top.quantize_stage import quantize_models

INT8_DIR = "artifacts/int8"
# FP32 source of each INT8 model; the benchmark uses the same names.
SOURCES = {"teacher": Path(TEACHER_DIR), "top": Path(PRUNED_DIR)}


def main(params: Params) -> None:
    write_json(metrics_path("quantize"), quantize_models(PREPARED_DIR, SOURCES, params.quantize, INT8_DIR))


if __name__ == "__main__":
    run_stage("quantize", main)
