"""Stage `baselines`: static top-k and truncation at the MACs ratio the prune stage reached."""

from pipeline.paths import PREPARED_DIR, TEACHER_DIR
from pipeline.stage import metrics_path, run_stage
from top.atomic import write_json
from top.params import Params
from top.pruning.compare import compare_with_baselines


def main(params: Params) -> None:
    metrics = compare_with_baselines(PREPARED_DIR, TEACHER_DIR, metrics_path("prune"), params.prune)
    write_json(metrics_path("baselines"), metrics)


if __name__ == "__main__":
    run_stage("baselines", main)
