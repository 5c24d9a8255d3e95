"""Stage `flex_benchmark`: CPU latency of the flexible models (dynamic and static) beside the dense teacher."""

from pathlib import Path

from pipeline.paths import FLEX_DIR, PREPARED_DIR, TEACHER_DIR
from pipeline.stage import metrics_path, run_stage
from top.atomic import write_json
from top.bench_stage import read_stage_metrics
from top.flex.bench import benchmark_flex
from top.params import Params


def main(params: Params) -> None:
    flex = read_stage_metrics(Path(metrics_path("flex")))
    if "skipped" in flex:
        write_json(metrics_path("flex_benchmark"), flex)
        return
    benchmark_flex(
        PREPARED_DIR,
        Path(TEACHER_DIR),
        Path(FLEX_DIR),
        Path(metrics_path("flex")),
        params.benchmark,
        Path(metrics_path("flex_benchmark")),
    )


if __name__ == "__main__":
    run_stage("flex_benchmark", main)
