"""Stage `teacher`: fine-tune the backbone on the prepared task and save it under artifacts/teacher."""

from pipeline import CHECKPOINT_ROOT, PREPARED_DIR, TEACHER_DIR, TEACHER_LIVE_DIR, metrics_path, run_stage
from top.atomic import write_json
from top.params import Params
from top.teacher import finetune_teacher


def main(params: Params) -> None:
    metrics = finetune_teacher(
        PREPARED_DIR, params.model.backbone, params.teacher, TEACHER_DIR, TEACHER_LIVE_DIR, CHECKPOINT_ROOT
    )
    write_json(metrics_path("teacher"), metrics)


if __name__ == "__main__":
    run_stage("teacher", main)
