"""The task registry: what each task's text columns, labels and official metrics are.

One ``TaskSpec`` describes a task in every layout we read: the original GLUE TSV files (column names from
their headers, or positions for header-less CoLA), the Hugging Face hub's ``glue`` configs, and
user-declared TSV/CSV datasets. Labels are kept in the hub's class order so that a model fine-tuned on the
local files and one fine-tuned on the hub data agree on what class 0 means.
"""

from __future__ import annotations

from dataclasses import dataclass

from top.errors import ParamsError
from top.params import CustomDatasetParams

# Metric keys produced by top.metrics.compute_metrics.
ACCURACY = "accuracy"
F1 = "f1"
MATTHEWS = "matthews_correlation"
PEARSON = "pearson"
SPEARMAN = "spearman"
EXACT_MATCH = "exact_match"  # SQuAD's, from top.qa.metrics


@dataclass(frozen=True)
class EvalSplit:
    """An evaluation split: our internal name, the GLUE TSV file name and the hub split name."""

    name: str
    tsv_file: str
    hub_split: str


@dataclass(frozen=True)
class TaskSpec:
    name: str
    # Column names in the source files (GLUE TSV header names, or "0", "1", ... for header-less CoLA).
    text_columns: tuple[str, ...]
    label_column: str
    # Raw label strings as they appear in the files, in class-index order; None for regression (STS-B).
    raw_labels: tuple[str, ...] | None
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    eval_splits: tuple[EvalSplit, ...]
    glue_dir_name: str | None = None
    has_header: bool = True
    hub_config: str | None = None
    hub_text_columns: tuple[str, ...] = ()
    # Only for user-declared datasets: paths of the train and eval files.
    train_path: str | None = None
    eval_path: str | None = None
    # User-declared datasets may leave their label set to be read off the training file.
    infer_labels: bool = False
    # "classification" (a label per text or pair, regression included) or "qa" (extractive answer spans).
    kind: str = "classification"

    @property
    def is_qa(self) -> bool:
        return self.kind == "qa"

    @property
    def is_regression(self) -> bool:
        return not self.is_qa and self.raw_labels is None and not self.infer_labels

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    @property
    def num_labels(self) -> int:
        if self.is_qa:
            return 2  # a start and an end score per token
        return 1 if self.raw_labels is None else len(self.raw_labels)


_DEV = (EvalSplit("eval", "dev.tsv", "validation"),)
_BINARY = ("0", "1")
_ENTAILMENT = ("entailment", "not_entailment")


def _glue(name: str, glue_dir: str, hub_columns: tuple[str, ...], **fields: object) -> TaskSpec:
    return TaskSpec(
        name=name,
        glue_dir_name=glue_dir,
        hub_config=name,
        hub_text_columns=hub_columns,
        **fields,  # type: ignore[arg-type]
    )


GLUE_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        # CoLA has no header: columns are source, label, original '*' mark, sentence.
        _glue(
            "cola",
            "CoLA",
            ("sentence",),
            text_columns=("3",),
            label_column="1",
            has_header=False,
            raw_labels=_BINARY,
            label_names=("unacceptable", "acceptable"),
            metrics=(MATTHEWS,),
            eval_splits=_DEV,
        ),
        _glue(
            "sst2",
            "SST-2",
            ("sentence",),
            text_columns=("sentence",),
            label_column="label",
            raw_labels=_BINARY,
            label_names=("negative", "positive"),
            metrics=(ACCURACY,),
            eval_splits=_DEV,
        ),
        _glue(
            "mrpc",
            "MRPC",
            ("sentence1", "sentence2"),
            text_columns=("#1 String", "#2 String"),
            label_column="Quality",
            raw_labels=_BINARY,
            label_names=("not_equivalent", "equivalent"),
            metrics=(F1, ACCURACY),
            eval_splits=_DEV,
        ),
        _glue(
            "stsb",
            "STS-B",
            ("sentence1", "sentence2"),
            text_columns=("sentence1", "sentence2"),
            label_column="score",
            raw_labels=None,
            label_names=None,
            metrics=(PEARSON, SPEARMAN),
            eval_splits=_DEV,
        ),
        _glue(
            "qqp",
            "QQP",
            ("question1", "question2"),
            text_columns=("question1", "question2"),
            label_column="is_duplicate",
            raw_labels=_BINARY,
            label_names=("not_duplicate", "duplicate"),
            metrics=(F1, ACCURACY),
            eval_splits=_DEV,
        ),
        _glue(
            "mnli",
            "MNLI",
            ("premise", "hypothesis"),
            text_columns=("sentence1", "sentence2"),
            label_column="gold_label",
            raw_labels=("entailment", "neutral", "contradiction"),
            label_names=("entailment", "neutral", "contradiction"),
            metrics=(ACCURACY,),
            eval_splits=(
                EvalSplit("eval", "dev_matched.tsv", "validation_matched"),
                EvalSplit("eval_mismatched", "dev_mismatched.tsv", "validation_mismatched"),
            ),
        ),
        _glue(
            "qnli",
            "QNLI",
            ("question", "sentence"),
            text_columns=("question", "sentence"),
            label_column="label",
            raw_labels=_ENTAILMENT,
            label_names=_ENTAILMENT,
            metrics=(ACCURACY,),
            eval_splits=_DEV,
        ),
        _glue(
            "rte",
            "RTE",
            ("sentence1", "sentence2"),
            text_columns=("sentence1", "sentence2"),
            label_column="label",
            raw_labels=_ENTAILMENT,
            label_names=_ENTAILMENT,
            metrics=(ACCURACY,),
            eval_splits=_DEV,
        ),
        # WNLI's files use 1 for entailment; the hub names class 0 not_entailment.
        _glue(
            "wnli",
            "WNLI",
            ("sentence1", "sentence2"),
            text_columns=("sentence1", "sentence2"),
            label_column="label",
            raw_labels=_BINARY,
            label_names=("not_entailment", "entailment"),
            metrics=(ACCURACY,),
            eval_splits=_DEV,
        ),
    )
}


# SQuAD v1.1: the hub's "squad" dataset, or <root>/squad/dev-v1.1.json split by article (see top.qa.prepare).
SQUAD = TaskSpec(
    name="squad",
    text_columns=("question", "context"),
    label_column="answers",
    raw_labels=None,
    label_names=None,
    metrics=(F1, EXACT_MATCH),
    eval_splits=_DEV,
    kind="qa",
)


def custom_task(name: str, params: CustomDatasetParams) -> TaskSpec:
    """A user-declared classification dataset; labels are inferred from the training file when not listed."""
    if len(params.text_columns) not in (1, 2):
        raise ParamsError(f"data.custom.{name}.text_columns must name one or two columns")
    labels = tuple(params.labels) if params.labels is not None else None
    return TaskSpec(
        name=name,
        text_columns=tuple(params.text_columns),
        label_column=params.label_column,
        raw_labels=labels,
        label_names=labels,
        metrics=(ACCURACY,),
        eval_splits=(EvalSplit("eval", params.eval, "eval"),),
        train_path=params.train,
        eval_path=params.eval,
        infer_labels=labels is None,
    )


def resolve_task(name: str, custom: dict[str, CustomDatasetParams]) -> TaskSpec:
    """Look a task up among GLUE and the datasets declared under ``data.custom``."""
    key = name.lower()
    if key in custom:
        return custom_task(key, custom[key])
    if key in GLUE_TASKS:
        return GLUE_TASKS[key]
    if key == SQUAD.name:
        return SQUAD
    known = [*sorted(GLUE_TASKS), SQUAD.name, *sorted(custom)]
    raise ParamsError(f"unknown task name {name!r} in data.task; known tasks: {', '.join(known)}")
