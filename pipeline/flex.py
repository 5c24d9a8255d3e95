"""Stage `flex`: Flexible BERT from the teacher; the supernet with gates and off-ramps goes to artifacts/flex."""

from pathlib import Path

from pipeline.paths import CHECKPOINT_ROOT, FLEX_DIR, PREPARED_DIR, TEACHER_DIR
from pipeline.stage import METRICS_DIR, metrics_path, run_stage
from top.atomic import write_json
from top.data.prepare import load_prepared
from top.flex.report import plot_flex, write_points, write_skipped
from top.flex.run import flex_teacher
from top.params import Params

QA_SKIP = "the flexible supernet is built for sequence classification; QA tasks (squad) run ToP only"


def main(params: Params) -> None:
    spec, _, _ = load_prepared(PREPARED_DIR)
    if spec.is_qa:
        metrics = {"task": spec.name} | write_skipped(
            QA_SKIP, Path(FLEX_DIR), Path(METRICS_DIR) / "flex_points.csv", Path(METRICS_DIR) / "flex.png"
        )
        write_json(metrics_path("flex"), metrics)
        return
    metrics, points = flex_teacher(PREPARED_DIR, TEACHER_DIR, params.flex, FLEX_DIR, CHECKPOINT_ROOT)
    write_points(points, Path(METRICS_DIR) / "flex_points.csv")
    plot_flex(metrics, points, Path(METRICS_DIR) / "flex.png")
    write_json(metrics_path("flex"), metrics)


if __name__ == "__main__":
    run_stage("flex", main)
