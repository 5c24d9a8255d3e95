"""The frozen teacher's outputs on the training split, computed once and looked up by every ToP training step.

The teacher does not change during the ToP search or the fine-tuning, so what the losses read from it for an
example (its logits, its last layer's token scores that the ranking distillation learns, and its head states when
state distillation is on) is the same at every epoch. Computing it once takes the teacher's forward out of every
step, which then runs the student alone. Per-token outputs are stored per example at its real length (one flat
tensor and offsets), so padding costs nothing on disk; a batch gets them back padded as its inputs are.

On disk the outputs live under the checkpoint root, named by a key over the teacher's directory digest, the
training split's content, max_length, the outputs held and the dtype they were computed in, so a changed teacher
or data set never reads stale outputs; the file is written atomically and reused by every later run (another
target, a resumed run) with the same key.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from top.atomic import atomic_file
from top.data.batches import EXAMPLE_INDEX, MODEL_INPUTS, batch_loader, model_inputs, with_example_index
from top.data.tasks import TaskSpec
from top.device import autocast_for, dtype_name, training_dtype
from top.fingerprint import dataset_digest, fingerprint
from top.params import Precision
from top.pruning.model import TokenPruningBertPreTrainedModel

log = logging.getLogger(__name__)

# Part of the file key: bump it when what the file holds changes meaning.
CACHE_FORMAT = 1


@dataclass
class TeacherTargets:
    """What the distillation losses read from the teacher for one batch (named as in the teacher's output)."""

    logits: torch.Tensor | None = None  # [B, labels] (classification)
    start_logits: torch.Tensor | None = None  # [B, N] (QA)
    end_logits: torch.Tensor | None = None
    head_states: torch.Tensor | None = None  # [B, d], or [B, N, d] for QA
    ranking_scores: torch.Tensor | None = None  # [B, N]: the attention each token received in the last layer


# Per-token outputs (padded to the batch length when looked up); the rest are one row per example.
PER_TOKEN = {"start_logits", "end_logits", "ranking_scores"}


def output_names(spec: TaskSpec, state_distillation: bool, ranking: bool = True) -> list[str]:
    """The outputs a ToP run reads from the teacher: the head's logits, the ranking scores, the head states."""
    names = ["start_logits", "end_logits"] if spec.is_qa else ["logits"]
    names += ["ranking_scores"] if ranking else []
    names += ["head_states"] if state_distillation else []
    return names


def _per_token(name: str, spec: TaskSpec) -> bool:
    return name in PER_TOKEN or (name == "head_states" and spec.is_qa)


@torch.no_grad()
def teacher_targets(
    teacher: TokenPruningBertPreTrainedModel, inputs: dict[str, torch.Tensor], ranking: bool, precision: Precision
) -> TeacherTargets:
    """The teacher's outputs for a batch, computed now (dense: the teacher prunes nothing)."""
    last_layer = teacher.config.num_hidden_layers - 1
    with autocast_for(inputs["input_ids"].device, precision):
        out = teacher(**inputs, mode="masked", return_scores=[last_layer] if ranking else False)
    return TeacherTargets(
        logits=getattr(out, "logits", None),
        start_logits=getattr(out, "start_logits", None),
        end_logits=getattr(out, "end_logits", None),
        head_states=out.head_states,
        ranking_scores=out.token_scores[last_layer] if ranking else None,
    )


@dataclass
class TeacherOutputs:
    """Every training example's teacher outputs; ``targets`` returns a batch's, by its ``example_index`` column."""

    offsets: torch.Tensor  # [N + 1]: example i's tokens are rows offsets[i]:offsets[i + 1] of each per-token tensor
    per_example: dict[str, torch.Tensor]  # name -> [N, ...]
    per_token: dict[str, torch.Tensor]  # name -> [total real tokens, ...]

    @property
    def examples(self) -> int:
        return len(self.offsets) - 1

    def targets(self, batch: dict[str, torch.Tensor], device: torch.device | str) -> TeacherTargets:
        """The outputs of ``batch``'s examples (on the CPU, with ``example_index``), padded like its inputs."""
        index = batch[EXAMPLE_INDEX]
        live = batch["attention_mask"].bool()
        values = {name: tensor[index] for name, tensor in self.per_example.items()}
        if self.per_token:
            starts, counts = self.offsets[index], self.offsets[index + 1] - self.offsets[index]
            if not torch.equal(counts, live.sum(dim=1)):
                raise ValueError("the cached teacher outputs do not match this batch's lengths: a stale cache file")
            # Example j's rows start[j] .. start[j] + count[j] - 1, concatenated in batch order.
            before = counts.cumsum(0) - counts
            rows = torch.arange(int(counts.sum())) + torch.repeat_interleave(starts - before, counts)
            for name, tensor in self.per_token.items():
                padded = tensor.new_zeros(*live.shape, *tensor.shape[1:])
                padded[live] = tensor[rows]
                values[name] = padded
        return TeacherTargets(**{name: value.to(device, non_blocking=True) for name, value in values.items()})

    def to_payload(self) -> dict[str, object]:
        return {"offsets": self.offsets, "per_example": self.per_example, "per_token": self.per_token}

    @classmethod
    def from_payload(cls, payload: dict[str, object]) -> TeacherOutputs:
        return cls(payload["offsets"], payload["per_example"], payload["per_token"])


@torch.no_grad()
def compute_teacher_outputs(
    teacher: TokenPruningBertPreTrainedModel,
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    spec: TaskSpec,
    names: list[str],
    batch_size: int,
    device: torch.device,
    precision: Precision,
) -> TeacherOutputs:
    """Run the teacher once over ``split`` (examples by length, so that batches carry little padding)."""
    teacher.eval()
    lengths = pc.list_value_length(split.with_format("arrow")["input_ids"]).to_numpy()
    order = np.argsort(lengths, kind="stable").tolist()
    per_row: dict[str, list[torch.Tensor | None]] = {name: [None] * len(split) for name in names}
    real_lengths = torch.zeros(len(split), dtype=torch.long)
    loader = batch_loader(
        with_example_index(split).select(order), tokenizer, batch_size, False, 0, pin_memory=device.type == "cuda"
    )
    for batch in tqdm(loader, desc="teacher outputs", leave=False):
        targets = teacher_targets(teacher, model_inputs(batch, device), "ranking_scores" in names, precision)
        live = batch["attention_mask"].bool()
        real_lengths[batch[EXAMPLE_INDEX]] = live.sum(dim=1)
        for name in names:
            values = getattr(targets, name).float().cpu()
            for row, example in enumerate(batch[EXAMPLE_INDEX].tolist()):
                per_row[name][example] = values[row][live[row]] if _per_token(name, spec) else values[row]
    offsets = torch.zeros(len(split) + 1, dtype=torch.long)
    offsets[1:] = real_lengths.cumsum(0)
    return TeacherOutputs(
        offsets=offsets,
        per_example={name: torch.stack(rows) for name, rows in per_row.items() if not _per_token(name, spec)},
        per_token={name: torch.cat(rows) for name, rows in per_row.items() if _per_token(name, spec)},
    )


@dataclass(frozen=True)
class TeacherOutputStore:
    """Where cached teacher outputs are kept (the checkpoint root) and whose teacher they are: the digest of its
    saved directory (``top.fingerprint.directory_digest``)."""

    directory: Path
    teacher_digest: str

    def path(
        self,
        split: datasets.Dataset,
        max_length: int,
        names: list[str],
        dtype: torch.dtype,
        rank_by_question: bool = False,
    ) -> Path:
        """The file for these outputs; ``rank_by_question``: the ranking scores come from the question's rows."""
        fields = {
            "format": CACHE_FORMAT,
            "teacher": self.teacher_digest,
            "data": dataset_digest(split, MODEL_INPUTS),
            "max_length": max_length,
            "outputs": sorted(names),
            "dtype": dtype_name(dtype),
        }
        # Added only when set, so that the files of runs ranked by every token keep their names.
        key = fingerprint(fields | ({"ranking_rows": "question"} if rank_by_question else {}))
        return Path(self.directory) / f"teacher-outputs-{key}.pt"


def cached_teacher_outputs(
    teacher: TokenPruningBertPreTrainedModel,
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    spec: TaskSpec,
    names: list[str],
    batch_size: int,
    max_length: int,
    device: torch.device,
    precision: Precision,
    store: TeacherOutputStore | None,
) -> tuple[TeacherOutputs, dict[str, object]]:
    """The teacher outputs of ``split``: read from ``store`` when an earlier run wrote them for the same teacher,
    data and outputs, else computed (and written there, when a store is given). Also returns what was done."""
    dtype = training_dtype(device, precision)
    by_question = bool(getattr(teacher.config, "rank_by_question", False))
    path = None if store is None else store.path(split, max_length, names, dtype, by_question)
    if path is not None and path.is_file():
        outputs = TeacherOutputs.from_payload(torch.load(path, map_location="cpu", weights_only=True))
        if outputs.examples == len(split) and set(outputs.per_example) | set(outputs.per_token) == set(names):
            log.info("teacher outputs of %d training examples read from %s", outputs.examples, path)
            return outputs, {"source": "read", "file": path.name, "seconds": 0.0}
        log.warning("%s does not hold this split's teacher outputs; computing them again", path)
    started = time.perf_counter()
    outputs = compute_teacher_outputs(teacher, split, tokenizer, spec, names, batch_size, device, precision)
    seconds = time.perf_counter() - started
    log.info("teacher outputs of %d training examples computed in %.1f s", outputs.examples, seconds)
    if path is not None:
        with atomic_file(path) as staging:
            torch.save(outputs.to_payload(), staging)
    return outputs, {"source": "computed", "file": None if path is None else path.name, "seconds": round(seconds, 2)}
