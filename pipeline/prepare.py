"""Stage `prepare`: read the task's raw data, tokenize it and write data/prepared."""

from pipeline import PREPARED_DIR, metrics_path, run_stage
from top.atomic import write_json
from top.data.prepare import prepare_task
from top.params import Params


def main(params: Params) -> None:
    metrics = prepare_task(params.data, params.model.backbone, PREPARED_DIR)
    write_json(metrics_path("prepare"), metrics)


if __name__ == "__main__":
    run_stage("prepare", main)
