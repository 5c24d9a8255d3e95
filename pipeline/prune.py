"""Stage `prune`: ToP token pruning of the teacher; the pruned model goes to artifacts/pruned."""

from pipeline.paths import CHECKPOINT_ROOT, PREPARED_DIR, PRUNE_LIVE_DIR, PRUNED_DIR, TEACHER_DIR
from pipeline.stage import metrics_path, run_stage
from top.atomic import write_json
from top.params import Params
from top.pruning.run import prune_teacher


def main(params: Params) -> None:
    metrics = prune_teacher(PREPARED_DIR, TEACHER_DIR, params.prune, PRUNED_DIR, PRUNE_LIVE_DIR, CHECKPOINT_ROOT)
    write_json(metrics_path("prune"), metrics)


if __name__ == "__main__":
    run_stage("prune", main)
