"""Stage `benchmark`: CPU latency of every model the pipeline produced (`--quick`: a seconds-long smoke run)."""

import argparse
import sys
from pathlib import Path

from pipeline.paths import CHECKPOINT_ROOT, INT8_DIR, INT8_SOURCES, PREPARED_DIR
from pipeline.stage import METRICS_DIR, metrics_path, run_stage
from top.bench_stage import benchmark_models
from top.params import Params
from top.quantize import set_inductor_cache

INDUCTOR_CACHE = f"{CHECKPOINT_ROOT}/inductor"


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny settings for tests; still writes every field")
    quick = parser.parse_args(sys.argv[1:]).quick
    set_inductor_cache(INDUCTOR_CACHE)
    benchmark_models(
        PREPARED_DIR,
        INT8_SOURCES,
        Path(INT8_DIR),
        {stage: Path(metrics_path(stage)) for stage in ("prune", "quantize")},
        params.benchmark,
        Path(metrics_path("benchmark")),
        Path(METRICS_DIR) / "benchmark_latency_padded.csv",
        Path(METRICS_DIR) / "benchmark.png",
        quick=quick,
    )


if __name__ == "__main__":
    run_stage("benchmark", main)
