"""Teacher fine-tuning with the Hugging Face ``Trainer``.

Trainer gives us checkpointing, resume, evaluation, autocast (``teacher.precision``) and the DVCLive callback; what this
module adds is the part that makes a stage reproducible: seeds, a checkpoint directory keyed by everything that
determines the run (so a rerun after a kill resumes the *same* run and never a stale one), and an atomic final
save. DVCLive is an optional extra: without it the teacher trains the same and only the live curves are missing.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import Sampler, SequentialSampler
from transformers import (
    BertForQuestionAnswering,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    EvalPrediction,
    Trainer,
    TrainerCallback,
    TrainerState,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from top.atomic import atomic_directory
from top.backbone import load_bert_config, load_new_head, load_tokenizer, resolve_backbone
from top.data.prepare import load_prepared
from top.data.tasks import TaskSpec
from top.device import resolve_device, training_dtype, training_record
from top.errors import ModelBuildError, ParamsError, one_line
from top.fingerprint import fingerprint
from top.metrics import compute_metrics, predictions_from_logits
from top.params import TeacherParams
from top.qa.evaluate import QAReference

log = logging.getLogger(__name__)

# Written into the live-curves output in place of DVCLive's files when dvclive is not installed.
NO_LIVE_NOTE = "NO_DVCLIVE"


class InOrderEvalTrainer(Trainer):
    """A ``Trainer`` whose evaluation and prediction read the split in row order, whatever the training sampling.

    With ``group_by_length`` transformers groups eval batches by length too. Classification metrics survive that
    (predictions and labels move together), but QA scoring pairs each window's logits with its row of the split,
    so reordered windows score answers from the wrong contexts.
    """

    def _get_eval_sampler(self, eval_dataset: datasets.Dataset) -> Sampler | None:
        return None if eval_dataset is None else SequentialSampler(eval_dataset)


def last_complete_checkpoint(checkpoint_dir: Path) -> str | None:
    """The newest checkpoint that was fully written; newer, partial ones (a kill mid-save) are removed.

    Trainer writes ``trainer_state.json`` last, so its presence marks a checkpoint as complete.
    """
    if not checkpoint_dir.is_dir():
        return None
    candidates = sorted(
        (path for path in checkpoint_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if path.name.rsplit("-", 1)[1].isdigit()),
        key=lambda path: int(path.name.rsplit("-", 1)[1]),
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "trainer_state.json").is_file():
            return str(candidate)
        log.warning("removing incomplete checkpoint %s", candidate)
        shutil.rmtree(candidate, ignore_errors=True)
    return None


def finetune_teacher(
    prepared_dir: str | Path,
    backbone: str,
    params: TeacherParams,
    output_dir: str | Path,
    live_dir: str | Path,
    checkpoint_root: str | Path,
) -> dict[str, Any]:
    """Fine-tune ``backbone`` on the prepared task, save it to ``output_dir`` and return the stage metrics."""
    spec, splits, meta = load_prepared(prepared_dir)
    if meta["backbone"] != backbone:
        raise ParamsError(
            f"the data in {prepared_dir} was tokenized for {meta['backbone']!r} but model.backbone is "
            f"{backbone!r}; rerun the prepare stage"
        )
    device = resolve_device(params.device, "teacher.device")
    if params.threads is not None:
        torch.set_num_threads(params.threads)
    load_bert_config(backbone)  # fails early, with a clear message, on anything that is not a BERT
    tokenizer = load_tokenizer(backbone)
    set_seed(params.seed)  # before from_pretrained: the new classifier head's init must be repeatable
    model = _new_model(spec, backbone, params.attention_dropout)

    run = fingerprint({"backbone": backbone, "teacher": params.model_dump(), "data": meta})
    checkpoint_dir = Path(checkpoint_root) / f"teacher-{run}"
    last_checkpoint = last_complete_checkpoint(checkpoint_dir)
    if last_checkpoint:
        log.info("resuming from %s", last_checkpoint)
    trainer = InOrderEvalTrainer(
        model=model,
        args=_training_arguments(params, checkpoint_dir, device),
        train_dataset=splits["train"],
        eval_dataset=splits["eval"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=lambda prediction: _score(spec, splits, meta, prediction),
        callbacks=_live_callbacks(checkpoint_dir / "live", resume=last_checkpoint is not None),
    )
    started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=last_checkpoint)
    train_seconds = time.perf_counter() - started

    evaluation = {}
    eval_speed = []
    for split in spec.eval_splits:
        logged = _final_evaluation(spec, trainer.state) if split.name == "eval" else None
        if logged is not None:
            evaluation[split.name], speed = logged
        else:
            prediction = trainer.predict(splits[split.name], metric_key_prefix=split.name)
            evaluation[split.name] = _score(spec, splits, meta, prediction)
            speed = prediction.metrics[f"{split.name}_samples_per_second"]
        eval_speed.append(speed)

    with atomic_directory(output_dir) as staging:
        trainer.save_model(str(staging))
        tokenizer.save_pretrained(str(staging))
    with atomic_directory(live_dir) as staging:
        if (checkpoint_dir / "live").is_dir():
            shutil.copytree(checkpoint_dir / "live", staging, dirs_exist_ok=True)
        else:
            (staging / NO_LIVE_NOTE).write_text("dvclive is not installed: no live training curves\n", encoding="utf-8")
    shutil.rmtree(checkpoint_dir, ignore_errors=True)

    return {
        "task": spec.name,
        "backbone": backbone,
        **training_record(device, params.precision),
        **evaluation["eval"],  # the primary split's metrics at top level, for `dvc metrics diff`
        "eval": evaluation,
        "train_examples": len(splits["train"]),
        "eval_examples": {split.name: len(splits[split.name]) for split in spec.eval_splits},
        **({"questions": meta["questions"]} if spec.is_qa else {}),
        "epochs": params.epochs,
        "train_seconds": round(train_seconds, 2),
        "train_examples_per_second": round(train_output.metrics["train_samples_per_second"], 3),
        "eval_examples_per_second": round(float(np.mean(eval_speed)), 3),
        "resumed_from_checkpoint": Path(last_checkpoint).name if last_checkpoint else None,
    }


def _live_callbacks(live_dir: Path, resume: bool) -> list[TrainerCallback]:
    """DVCLive's callback, logging the training curves to ``live_dir``, when dvclive is installed; else none."""
    try:
        from dvclive import Live
    except ImportError:
        log.info("dvclive is not installed: training without live curves (pip install dvclive to record them)")
        return []
    from transformers.integrations import DVCLiveCallback

    return [DVCLiveCallback(live=Live(dir=str(live_dir), resume=resume, save_dvc_exp=False, dvcyaml=None))]


def _final_evaluation(spec: TaskSpec, state: TrainerState) -> tuple[dict[str, float], float] | None:
    """The primary split's metrics and speed from the evaluation Trainer ran after the last step, if it did.

    The epoch-end evaluation of the last epoch is the final model's: predicting again would double the cost,
    which is large on long inputs. A run resumed from a checkpoint taken after that evaluation finds it in
    the restored log history; anything else (no such entry) is evaluated afresh.
    """
    for entry in reversed(state.log_history):
        final = entry.get("step") == state.global_step and "eval_samples_per_second" in entry
        if final and all(f"eval_{metric}" in entry for metric in spec.metrics):
            return {metric: entry[f"eval_{metric}"] for metric in spec.metrics}, entry["eval_samples_per_second"]
    return None


def _new_model(
    spec: TaskSpec, backbone: str, attention_dropout: float | None
) -> BertForSequenceClassification | BertForQuestionAnswering:
    """The backbone with a new head for ``spec``, or a one-line ``ModelBuildError`` naming the task and the cause.

    The head's size is set through ``id2label`` alone: ``num_labels`` is derived from it, so passing both (one
    of them None, as for regression) leaves the config without a label count.
    """
    config = load_bert_config(backbone)
    if attention_dropout is not None:
        config.attention_probs_dropout_prob = attention_dropout
    labels = spec.label_names or tuple(f"LABEL_{i}" for i in range(spec.num_labels))
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    model_class = BertForQuestionAnswering if spec.is_qa else BertForSequenceClassification
    if not spec.is_qa:
        config.problem_type = "regression" if spec.is_regression else "single_label_classification"
    try:
        model = load_new_head(model_class, resolve_backbone(backbone), config)
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        cause = one_line(exc)
        if "ignore_mismatched_sizes" in str(exc):
            cause = f"its saved {spec.kind} head has another shape (a checkpoint fine-tuned for another task?)"
        raise ModelBuildError(
            f"cannot build a {model_class.__name__} for task {spec.name} from {backbone}: {cause}"
        ) from None
    if model.config.num_labels != spec.num_labels:
        raise ModelBuildError(
            f"the {model_class.__name__} built for task {spec.name} has {model.config.num_labels} outputs; "
            f"the task needs {spec.num_labels}"
        )
    return model


def _training_arguments(params: TeacherParams, checkpoint_dir: Path, device: str) -> TrainingArguments:
    dtype = training_dtype(device, params.precision)
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=params.epochs,
        learning_rate=params.learning_rate,
        per_device_train_batch_size=params.batch_size,
        per_device_eval_batch_size=params.eval_batch_size,
        weight_decay=params.weight_decay,
        warmup_steps=params.warmup_ratio,
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=1,
        logging_strategy="steps",
        logging_steps=0.02,
        seed=params.seed,
        data_seed=params.seed,
        use_cpu=device == "cpu",
        bf16=dtype == torch.bfloat16,  # autocast; the weights and the saved model stay float32
        dataloader_pin_memory=device == "cuda",
        report_to="none",
        optim="adamw_torch_fused",
        train_sampling_strategy="group_by_length" if params.group_by_length else "random",
        dataloader_num_workers=0,
    )


def _score(
    spec: TaskSpec, splits: datasets.DatasetDict, meta: dict[str, Any], prediction: EvalPrediction
) -> dict[str, float]:
    if spec.is_qa:  # predictions: start and end logits per window, padded with -100 past each window's end
        start_logits, end_logits = prediction.predictions
        reference = QAReference.from_prepared(splits, meta)
        return reference.score(splits["eval"], list(start_logits), list(end_logits))[0]
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return compute_metrics(spec, predictions_from_logits(spec, logits), prediction.label_ids)
