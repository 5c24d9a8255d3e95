"""Stage `quantize`: static INT8 (Intel Neural Compressor) of the teacher and the ToP model, or a no-op note."""

from pipeline.paths import INT8_DIR, INT8_SOURCES, PREPARED_DIR
from pipeline.stage import metrics_path, run_stage
from top.atomic import write_json
from top.params import Params
from top.quantize_stage import quantize_models


def main(params: Params) -> None:
    write_json(metrics_path("quantize"), quantize_models(PREPARED_DIR, INT8_SOURCES, params.quantize, INT8_DIR))


if __name__ == "__main__":
    run_stage("quantize", main)
