"""Stage `prune`: ToP token pruning of the teacher; the pruned model goes to artifacts/pruned."""

from pipeline.prepare import PREPARED_DIR
from pipeline.stage import metrics_path, run_stage
from pipeline.teacher import CHECKPOINT_ROOT, TEACHER_DIR
from top.atomic import write_json
from top.params import Params
from top.pruning.run import prune_teacher

PRUNED_DIR = "artifacts/pruned"
LIVE_DIR = "artifacts/prune_live"


def main(params: Params) -> None:
    metrics = prune_teacher(PREPARED_DIR, TEACHER_DIR, params.prune, PRUNED_DIR, LIVE_DIR, CHECKPOINT_ROOT)
    write_json(metrics_path("prune"), metrics)


if __name__ == "__main__":
    run_stage("prune", main)
