"""Every declared task through prepare -> teacher -> prune -> quantize, at stage level, on a tiny random BERT.

Each task reads tiny synthetic files in its original format (GLUE's TSV layouts with their quirks, a custom TSV
set, a custom gzipped CSV set, a SQuAD v1.1 JSON), so a task whose data, head, loss, metric or INT8 path is broken
fails here rather than in a user's run. Data, backbone and params are built once per session; each task's run
is cached, so the benchmark check reuses the STS-B run.
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from flows.compress import run_summary
from pipeline import prepare as prepare_stage
from pipeline import run_stage
from pipeline import teacher as teacher_stage
from pipeline.baselines import compare_with_baselines
from pipeline.benchmark import benchmark_models
from pipeline.flex import REGRESSION_SKIP, flex_teacher, skip_reason
from pipeline.prune import prune_teacher
from pipeline.quantize import quantize_models
from top.backbone import check_task_head, load_tokenizer
from top.data.prepare import load_prepared, prepare_task
from top.data.tasks import SQUAD
from top.errors import ModelBuildError
from top.params import Params, parse_params
from top.pruning.model import TokenPruningBertForQuestionAnswering, pruning_model_class
from top.quantize import load_int8
from top.teacher import finetune_teacher

from .conftest import save_tiny_bert, tiny_pipeline_params
from .glue_fixtures import MNLI_COLUMNS

TRAIN_ROWS, EVAL_ROWS = 16, 8
SUBJECTS = ["the cat", "a dog", "my old friend", "the tired pilot", "a small child", "the teacher", "our team"]
VERBS = ["sees", "likes", "paints", "finds", "follows", "builds", "avoids"]
OBJECTS = ["a red house", "the river", "many birds", "an empty box", "the tall tower", "fresh bread", "a song"]

# Per task: official metric keys, and the classes its labels map to (None: regression scores).
EXPECTED: dict[str, tuple[set[str], int | None]] = {
    "cola": ({"matthews_correlation"}, 2),
    "sst2": ({"accuracy"}, 2),
    "mrpc": ({"f1", "accuracy"}, 2),
    "stsb": ({"pearson", "spearman"}, None),
    "qqp": ({"f1", "accuracy"}, 2),
    "mnli": ({"accuracy"}, 3),
    "qnli": ({"accuracy"}, 2),
    "rte": ({"accuracy"}, 2),
    "wnli": ({"accuracy"}, 2),
    "reviews": ({"accuracy"}, 2),  # custom TSV, labels declared
    "topics": ({"accuracy"}, 3),  # custom gzipped CSV, sentence pairs, labels read off the training file
    "squad": ({"f1", "exact_match"}, None),
}
TASKS = list(EXPECTED)
# INT8 export dominates a task's run (seconds a model). The ToP model is quantized for every task; the dense
# teacher, whose blocks are the same for every classification task, for regression (the benchmark needs it) and QA.
QUANTIZED_TEACHERS = {"stsb", "squad"}


STS_METADATA = ["index", "genre", "filename", "year", "old_index", "source1", "source2"]


def sts_metadata(i: int) -> list[str]:
    return [str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none"]


def sentence(i: int) -> str:
    return f"{SUBJECTS[i % 7]} {VERBS[(i * 3) % 7]} {OBJECTS[(i * 5) % 7]}"


def tsv(path: Path, rows: list[list[str]], header: list[str] | None = None, bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([header] if header else []) + rows
    path.write_text(("\ufeff" if bom else "") + "".join("\t".join(row) + "\n" for row in lines), encoding="utf-8")


def write_glue(root: Path, name: str, rows: int) -> None:
    """The train or dev split of every GLUE task, in the layout of the GLUE distribution."""
    ids = range(0, rows) if name == "train" else range(100, 100 + rows)
    # CoLA: no header; source, label, the original '*' mark, sentence.
    tsv(root / f"glue/CoLA/{name}.tsv", [["gj04", str(i % 2), "" if i % 2 else "*", sentence(i)] for i in ids])
    tsv(root / f"glue/SST-2/{name}.tsv", [[sentence(i) + " ", str(i % 2)] for i in ids], ["sentence", "label"])
    tsv(  # MRPC: a UTF-8 byte-order mark before the header, label first
        root / f"glue/MRPC/{name}.tsv",
        [[str(i % 2), str(7000 + i), str(8000 + i), sentence(i), sentence(i + i % 2)] for i in ids],
        ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        bom=True,
    )
    tsv(  # STS-B: similarity scores in [0, 5], three decimals, after seven metadata columns
        root / f"glue/STS-B/{name}.tsv",
        [[*sts_metadata(i), sentence(i), sentence(i + i % 4), f"{i * 37 % 51 / 10:.3f}"] for i in ids],
        [*STS_METADATA, "sentence1", "sentence2", "score"],
    )
    tsv(
        root / f"glue/QQP/{name}.tsv",
        [[str(i), str(2 * i), str(2 * i + 1), sentence(i) + "?", sentence(i + i % 2) + "?", str(i % 2)] for i in ids],
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
    )
    nli = ("entailment", "neutral", "contradiction")
    parses = ["( a )", "( b )", "(ROOT a)", "(ROOT b)"]
    if name == "train":
        mnli = {"train.tsv": ["label1", "gold_label"]}
    else:  # matched and mismatched dev files, each with five annotator labels
        annotators = [f"label{k}" for k in range(1, 6)]
        mnli = {f"{kind}.tsv": [*annotators, "gold_label"] for kind in ("dev_matched", "dev_mismatched")}
    for file, labels in mnli.items():
        tsv(
            root / f"glue/MNLI/{file}",
            [
                [str(i), str(900 + i), f"{900 + i}n", "fiction", *parses, sentence(i), sentence(i + 1)]
                + [nli[i % 3]] * len(labels)
                for i in ids
            ],
            MNLI_COLUMNS.split("\t") + labels,
        )
    entail = ("entailment", "not_entailment")
    tsv(
        root / f"glue/QNLI/{name}.tsv",
        [[str(i), f"Who {VERBS[i % 7]} {OBJECTS[i % 7]}?", sentence(i), entail[i % 2]] for i in ids],
        ["index", "question", "sentence", "label"],
    )
    for task, labels in (("RTE", entail), ("WNLI", ("0", "1"))):
        tsv(
            root / f"glue/{task}/{name}.tsv",
            [[str(i), sentence(i) + ".", sentence(i + 2) + ".", labels[i % 2]] for i in ids],
            ["index", "sentence1", "sentence2", "label"],
        )


def write_custom(root: Path, name: str, rows: int) -> None:
    """The two custom sets: reviews (plain TSV, one text) and topics (gzipped CSV, a pair with quoted commas)."""
    ids = range(0, rows) if name == "train" else range(100, 100 + rows)
    tsv(root / f"custom/reviews/{name}.tsv", [[sentence(i), ("neg", "pos")[i % 2]] for i in ids], ["text", "label"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["topic", "title", "body"])
    writer.writerows([("art", "food", "travel")[i % 3], f"{sentence(i)}, again", f'"{sentence(i + 1)}"'] for i in ids)
    path = root / f"custom/topics/{name}.csv.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(buffer.getvalue())


def write_squad(root: Path, articles: int = 8) -> None:
    """squad/dev-v1.1.json: short articles of two questions each, answer offsets into their contexts."""
    data = []
    for a in range(articles):
        subject, place, verb = SUBJECTS[a % 7], OBJECTS[a % 7], VERBS[a % 7]
        context = f"{subject.capitalize()} lives near {place}. Every day it {verb} {OBJECTS[(a + 3) % 7]}."
        qas = [
            {
                "id": f"q{a}-{k}",
                "question": question,
                "answers": [{"text": answer, "answer_start": context.index(answer)}],
            }
            for k, (question, answer) in enumerate(
                ((f"Where does {subject} live?", place), ("What does it do every day?", verb))
            )
        ]
        data.append({"title": f"Article {a}", "paragraphs": [{"context": context, "qas": qas}]})
    path = root / "squad/dev-v1.1.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")


@pytest.fixture(scope="session")
def matrix_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("matrix-data")
    write_glue(root, "train", TRAIN_ROWS)
    write_glue(root, "dev", EVAL_ROWS)
    write_custom(root, "train", TRAIN_ROWS)
    write_custom(root, "eval", EVAL_ROWS)
    write_squad(root)
    return root


@pytest.fixture(scope="session")
def matrix_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pre-trained-style backbone: a 2-layer, 32-hidden random encoder with no task head, and the real tokenizer."""
    torch.manual_seed(0)
    return save_tiny_bert(tmp_path_factory.mktemp("matrix-backbone"), BertModel, max_position_embeddings=64)


@pytest.fixture(scope="session")
def matrix_params(default_params_dict, matrix_data, matrix_backbone, tmp_path_factory) -> dict[str, Any]:
    """The whole-pipeline test params (tiny_pipeline_params), cut to seconds per task; one data root for all."""
    params = copy.deepcopy(default_params_dict)
    tiny_pipeline_params(params, matrix_backbone, tmp_path_factory.mktemp("toy-unused"))
    params["data"].update(data_dir=str(matrix_data), max_length=24)
    params["data"]["qa"].update(max_length=48, doc_stride=16)
    params["data"]["custom"] = {
        "reviews": {
            "train": "custom/reviews/train.tsv",
            "eval": "custom/reviews/eval.tsv",
            "text_columns": ["text"],
            "label_column": "label",
            "labels": ["neg", "pos"],
        },
        "topics": {
            "train": "custom/topics/train.csv.gz",
            "eval": "custom/topics/eval.csv.gz",
            "text_columns": ["title", "body"],
            "label_column": "topic",
            "labels": None,
        },
    }
    params["teacher"].update(epochs=1, batch_size=8, eval_batch_size=16)
    params["prune"].update(
        epochs=40,
        finetune_epochs=2,
        warmup_ratio=0.3,
        eval_steps=10,
        batch_size=8,
        eval_batch_size=16,
        macs_tolerance=0.2,
    )
    params["quantize"].update(calibration_batches=1, calibration_batch_size=8, eval_batch_size=16)
    return params


def task_params(matrix_params: dict[str, Any], task: str) -> Params:
    params = copy.deepcopy(matrix_params)
    params["data"]["task"] = task
    return parse_params(params)


@pytest.fixture(scope="session")
def run_task(matrix_params, tmp_path_factory):
    """Run (once per session) a task's prepare -> teacher -> prune -> quantize; return its params, dir, metrics."""
    runs: dict[str, tuple[Params, Path, dict[str, Any]]] = {}

    def run(task: str) -> tuple[Params, Path, dict[str, Any]]:
        if task not in runs:
            params = task_params(matrix_params, task)
            work = tmp_path_factory.mktemp(f"run-{task}")
            metrics = {"prepare": prepare_task(params.data, params.model.backbone, work / "prepared")}
            metrics["teacher"] = finetune_teacher(
                work / "prepared", params.model.backbone, params.teacher, work / "teacher", work / "tl", work / "ckpt"
            )
            metrics["prune"] = prune_teacher(
                work / "prepared", work / "teacher", params.prune, work / "pruned", work / "pl", work / "ckpt"
            )
            sources = {"teacher": work / "teacher"} if task in QUANTIZED_TEACHERS else {}
            sources["top"] = work / "pruned"
            metrics["quantize"] = quantize_models(work / "prepared", sources, params.quantize, work / "int8")
            runs[task] = (params, work, metrics)
        return runs[task]

    return run


@pytest.mark.parametrize("task", TASKS)
def test_task_runs_prepare_teacher_prune_quantize(run_task, task):
    params, work, metrics = run_task(task)
    keys, classes = EXPECTED[task]
    spec, splits, _ = load_prepared(work / "prepared")
    eval_splits = {split.name for split in spec.eval_splits}
    assert eval_splits == ({"eval", "eval_mismatched"} if task == "mnli" else {"eval"})
    if spec.is_qa:
        assert metrics["prepare"]["questions"] == {"train": 12, "eval": 4}  # 2 of 8 articles held out
    else:
        assert metrics["prepare"]["rows"] == {"train": TRAIN_ROWS} | {name: EVAL_ROWS for name in eval_splits}
        labels = splits["train"]["label"]
        if classes is None:  # float scores, kept as floats
            assert spec.is_regression and spec.num_labels == 1 and len(set(labels)) > 2 and 3.7 in labels
        else:
            assert not spec.is_regression and spec.num_labels == classes and set(labels) == set(range(classes))

    teacher = metrics["teacher"]
    assert keys <= set(teacher) and set(teacher["eval"]) == eval_splits
    assert all(set(teacher["eval"][name]) == keys for name in eval_splits)
    prune = metrics["prune"]
    assert set(prune["teacher"]) == keys and keys <= set(prune)
    assert prune["macs_ratio_real_lengths"] <= params.prune.target_macs + params.prune.macs_tolerance
    quantize = metrics["quantize"]
    int8_models = ["teacher", "top"] if task in QUANTIZED_TEACHERS else ["top"]
    assert quantize["task"] == spec.name and [name for name in quantize if name in ("teacher", "top")] == int8_models
    for name in int8_models:
        assert set(quantize[name]["fp32"]) == keys and set(quantize[name]["int8"]) == keys
        if spec.is_regression:  # exact agreement means nothing for scores: closeness of the two outputs instead
            assert "prediction_agreement" not in quantize[name]
            closeness = quantize[name]["prediction_closeness"]
            assert set(closeness) == {"pearson", "mean_abs_difference"} and closeness["mean_abs_difference"] >= 0
            assert closeness["pearson"] is None or -1 <= closeness["pearson"] <= 1
        else:
            assert 0 <= quantize[name]["prediction_agreement"] <= 1
    json.dumps(metrics, allow_nan=False)  # the stages write these as JSON metrics

    # The saved models reload with the task's head and run: FP32 teacher and ToP model, and the INT8 copies.
    tokenizer = load_tokenizer(str(work / "teacher"))
    batch = tokenizer(
        ["the cat sees a red house", "a dog"], ["many birds", "fresh bread"], return_tensors="pt", padding=True
    )
    problem_type = None if spec.is_qa else "regression" if spec.is_regression else "single_label_classification"
    models = {}
    for name, directory in (("teacher", work / "teacher"), ("top", work / "pruned")):
        check_task_head(directory, spec)
        models[name] = pruning_model_class(directory).from_pretrained(str(directory)).eval()
        assert models[name].config.num_labels == spec.num_labels and models[name].config.problem_type == problem_type
    assert isinstance(models["top"], TokenPruningBertForQuestionAnswering) == spec.is_qa
    assert models["top"].config.keep_ratios == list(prune["keep_ratios"].values())
    models |= {f"{name}-int8": load_int8(work / "int8" / name) for name in int8_models}
    for model in models.values():
        with torch.no_grad():
            output = model(**batch)
        if spec.is_qa:
            assert output.start_logits.shape == output.end_logits.shape == batch["input_ids"].shape
        else:
            assert output.logits.shape == (2, spec.num_labels)


def test_regression_baselines_benchmark_and_flow_summary(run_task, tmp_path):
    """The rest of the ToP chain on the STS-B run: the baselines at ToP's MACs, the benchmark job (every variant
    timed, dev Pearson beside each), and the Prefect flow's run summary of it."""
    params, work, metrics = run_task("stsb")
    compared = compare_with_baselines(work / "prepared", work / "teacher", metrics["prune"], params.prune)
    assert compared["metric"] == "pearson" and compared["top"] == metrics["prune"]["pearson"]
    for baseline in ("static_topk", "truncation"):
        assert {"pearson", "spearman", "macs_ratio_real_lengths"} <= set(compared["details"][baseline])

    result = benchmark_models(
        work / "prepared",
        {"teacher": work / "teacher", "top": work / "pruned"},
        work / "int8",
        {"prune": metrics["prune"], "quantize": metrics["quantize"]},
        params.benchmark,
        tmp_path / "benchmark.json",
        tmp_path / "latency.csv",
        tmp_path / "benchmark.png",
        quick=True,
    )
    assert result["task"] == "stsb" and result["metric"] == "pearson"
    peers = {"dense-fp32-ort", "dense-int8-ort", "dense-fp32-openvino", "dense-int8-openvino"}
    own = {
        "dense-fp32-hf-eager",
        "dense-fp32-eager",
        "dense-int8-eager",
        "top-fp32-eager",
        "top-int8-eager",
        "top-fp32-ort",
        "top-int8-ort",
    }
    assert set(result["latency"]) == own | peers
    assert {entry["model"] for entry in result["peers"].values()} == peers
    # The ToP regressor in ONNX Runtime: INT8 against FP32 as closeness, never as exact agreement.
    assert set(result["top_ort"]["ort-int8"]["vs_fp32"]) == {"prediction_closeness"}
    assert all(-1 <= result["dev_metric"][model] <= 1 for model in peers)  # Pearson, scored here on dev
    assert all(cell["speedup_vs_fastest_dense"] > 0 for cell in result["latency"]["top-int8-eager"]["dynamic"].values())
    assert json.loads((tmp_path / "benchmark.json").read_text())["summary"]
    assert (tmp_path / "benchmark.png").is_file()

    # The Prefect flow's run summary reads these metrics, with the flex stages skipped for regression.
    flex = {"task": "stsb", "skipped": REGRESSION_SKIP}
    table = run_summary(
        "stsb-run", {name: metrics[name] for name in ("prune", "quantize")} | {"benchmark": result, "flex": flex}
    )
    assert f"| ToP dev pearson | {metrics['prune']['pearson']} |" in table
    assert f"| Flexible BERT | skipped: {REGRESSION_SKIP} |" in table


def test_flex_stages_skip_regression_with_a_reason(run_task):
    params, work, _ = run_task("stsb")
    spec, _, _ = load_prepared(work / "prepared")
    assert skip_reason(params.flex, spec) == REGRESSION_SKIP
    with pytest.raises(ModelBuildError, match=r"no Flexible BERT for task stsb: .*regression"):
        flex_teacher(work / "prepared", work / "teacher", params.flex, work / "flex", work / "ckpt")


def test_a_model_that_does_not_fit_the_task_is_one_line_naming_it(
    matrix_params, matrix_backbone, run_task, tmp_path, monkeypatch, capsys
):
    """A backbone holding another task's head, and a teacher of the wrong task: one-line errors, exit 2."""
    fine_tuned = tmp_path / "mnli-checkpoint"
    config = BertConfig.from_pretrained(matrix_backbone, num_labels=3)
    BertForSequenceClassification(config).save_pretrained(fine_tuned)
    load_tokenizer(str(matrix_backbone)).save_pretrained(fine_tuned)

    params = copy.deepcopy(matrix_params)
    params["data"]["task"] = "stsb"
    params["model"]["backbone"] = str(fine_tuned)
    (tmp_path / "params.yaml").write_text(json.dumps(params), encoding="utf-8")  # JSON is YAML
    monkeypatch.chdir(tmp_path)
    run_stage("prepare", prepare_stage.main)
    with pytest.raises(SystemExit) as stopped:
        run_stage("teacher", teacher_stage.main)
    assert stopped.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("error: stage teacher: cannot build a BertForSequenceClassification for task stsb")
    assert "head has another shape" in message

    # Later stages check the saved model's head against the prepared task before loading it.
    _, stsb, _ = run_task("stsb")
    needs = r"has 3 output\(s\); task stsb needs a classifier with 1 output\(s\) \(regression\)"
    with pytest.raises(ModelBuildError, match=needs):
        prune_teacher(stsb / "prepared", fine_tuned, task_params(matrix_params, "stsb").prune, *[tmp_path / "x"] * 3)
    with pytest.raises(ModelBuildError, match="holds a sequence-classification model; task squad needs an extractive"):
        check_task_head(stsb / "teacher", SQUAD)
