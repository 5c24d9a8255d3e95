"""The teacher-output cache of ToP training: the same losses as running the teacher, stored per example at its real
length, keyed by teacher and data, and reused by a later run."""

import json

import datasets
import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering

from studies import teacher_cache_cost
from top.backbone import load_tokenizer
from top.data.batches import batch_loader, with_example_index
from top.data.tasks import resolve_task
from top.pruning import teacher_cache
from top.pruning import train as train_module
from top.pruning.l0 import LagrangianConstraint, PruningMasks
from top.pruning.macs import EncoderDims
from top.pruning.teacher_cache import (
    TeacherOutputs,
    TeacherOutputStore,
    cached_teacher_outputs,
    compute_teacher_outputs,
    output_names,
)
from top.pruning.train import load_models, train_token_pruning


def first_batch(splits, tokenizer, params):
    loader = batch_loader(with_example_index(splits["train"]), tokenizer, params.batch_size, shuffle=True, seed=5)
    return next(iter(loader))


def assert_same_losses(teacher, student, cached, batch, spec, prune):
    """A search step's and a fine-tuning step's losses, with the live teacher and with the cached outputs."""
    masks = PruningMasks(len(prune.prune_layers), prune.bins)
    dims = EncoderDims.from_config(student.config)
    student.train()
    for phase in ("search", "finetune"):
        losses = {}
        for source in ("live", "cached"):
            torch.manual_seed(11)  # the same mask samples and dropout in both
            targets = cached.targets(batch, "cpu") if source == "cached" else None
            if phase == "search":
                losses[source] = train_module._step_losses(
                    teacher, student, masks, LagrangianConstraint(), batch, spec, prune, dims, 0.7, 0.5, targets
                )
            else:
                losses[source] = train_module._finetune_losses(teacher, student, batch, spec, prune, targets)
        assert losses["live"].keys() == losses["cached"].keys()
        for name, value in losses["live"].items():
            # The cache ran the teacher on other batches (other padding): equal up to float rounding.
            assert torch.allclose(value, losses["cached"][name], rtol=1e-5, atol=1e-6), (phase, name)
            assert value != 0 or name == "lagrangian", (phase, name)


@pytest.mark.parametrize("state_weight", [0.0, 0.5])
def test_cached_outputs_give_the_losses_of_the_live_teacher(toy_top, state_weight):
    params, spec, splits, tokenizer, tmp_path = toy_top
    prune = params.prune.model_copy(update={"state_distill_weight": state_weight})
    teacher, student = load_models(tmp_path / "teacher", prune)
    names = output_names(spec, state_weight > 0)
    cached = compute_teacher_outputs(teacher, splits["train"], tokenizer, spec, names, 16, torch.device("cpu"), "auto")
    assert set(cached.per_example) == {"logits"} | ({"head_states"} if state_weight else set())
    assert_same_losses(teacher, student, cached, first_batch(splits, tokenizer, prune), spec, prune)


def test_qa_outputs_are_kept_per_token_and_give_the_live_losses(toy_top, tiny_bert_dir):
    """Extractive QA: start and end logits, token scores and head states are all per token, of varying length."""
    params, *_, tmp_path = toy_top
    config = BertConfig.from_pretrained(tiny_bert_dir, num_hidden_layers=3)
    torch.manual_seed(0)
    BertForQuestionAnswering(config).save_pretrained(tmp_path / "qa")
    spec = resolve_task("squad", {})
    generator = torch.Generator().manual_seed(1)
    rows = []
    for length in torch.randint(6, 20, (12,), generator=generator).tolist():
        ids = torch.randint(1000, 5000, (length,), generator=generator).tolist()
        rows.append(
            {
                "input_ids": [101, *ids[:3], 102, *ids[5:], 102],
                "token_type_ids": [0] * 5 + [1] * (length - 4),
                "attention_mask": [1] * (length + 1),
                "start_positions": 5,
                "end_positions": 6,
            }
        )
    split = datasets.Dataset.from_list(rows)
    prune = params.prune.model_copy(update={"state_distill_weight": 0.5, "batch_size": 5})
    teacher, student = load_models(tmp_path / "qa", prune)
    tokenizer = load_tokenizer(str(tiny_bert_dir))
    names = output_names(spec, True)
    cached = compute_teacher_outputs(teacher, split, tokenizer, spec, names, 4, torch.device("cpu"), "auto")
    assert not cached.per_example and set(cached.per_token) == set(names)
    assert len(cached.per_token["start_logits"]) == sum(len(row["input_ids"]) for row in rows)
    batch = next(iter(batch_loader(with_example_index(split), tokenizer, 5, shuffle=True, seed=2)))
    assert_same_losses(teacher, student, cached, batch, spec, prune)


def test_per_token_outputs_are_stored_at_real_length_and_padded_back():
    outputs = TeacherOutputs(
        offsets=torch.tensor([0, 2, 5]),
        per_example={"logits": torch.tensor([[1.0, 2.0], [3.0, 4.0]])},
        per_token={"ranking_scores": torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])},
    )
    batch = {"example_index": torch.tensor([1, 0]), "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])}
    targets = outputs.targets(batch, "cpu")
    assert torch.equal(targets.logits, torch.tensor([[3.0, 4.0], [1.0, 2.0]]))
    assert torch.equal(targets.ranking_scores, torch.tensor([[0.3, 0.4, 0.5], [0.1, 0.2, 0.0]]))
    stale = {"example_index": torch.tensor([0]), "attention_mask": torch.tensor([[1, 1, 1]])}
    with pytest.raises(ValueError, match="stale cache"):
        outputs.targets(stale, "cpu")


def test_the_file_key_follows_teacher_data_and_outputs(toy_top):
    _, spec, splits, _, root = toy_top
    train = splits["train"]
    store = TeacherOutputStore(root, "teacher-a")
    names = output_names(spec, False)
    path = store.path(train, 24, names, torch.float32)
    assert path.parent == root and path.name.startswith("teacher-outputs-")
    same = TeacherOutputStore(root, "teacher-a").path(train.select(range(len(train))), 24, names, torch.float32)
    assert same == path  # the same rows, held another way
    others = [
        TeacherOutputStore(root, "teacher-b").path(train, 24, names, torch.float32),
        store.path(train.select(range(len(train) - 1)), 24, names, torch.float32),
        store.path(train.shuffle(seed=1), 24, names, torch.float32),
        store.path(train, 32, names, torch.float32),
        store.path(train, 24, output_names(spec, True), torch.float32),
        store.path(train, 24, names, torch.bfloat16),
        store.path(train, 24, names, torch.float32, rank_by_question=True),
    ]
    assert len({path, *others}) == 1 + len(others)


def test_cached_and_live_training_agree_and_a_second_run_reads_the_file(toy_top, monkeypatch):
    params, spec, splits, tokenizer, tmp_path = toy_top
    short = params.prune.model_copy(update={"epochs": 1, "finetune_epochs": 1, "eval_steps": 2, "target_macs": 1.0})
    store = TeacherOutputStore(tmp_path / "ckpt", "digest")
    runs = {}
    for name, cache in (("live", False), ("cached", True)):
        teacher, student = load_models(tmp_path / "teacher", short)
        update = {"cache_teacher_outputs": cache}
        runs[name] = train_token_pruning(
            teacher, student, spec, splits, tokenizer, short.model_copy(update=update), 24, teacher_store=store
        )[2]
    assert runs["live"]["teacher_outputs"] == {"source": "live"}
    assert runs["cached"]["teacher_outputs"]["source"] == "computed"
    assert len(list((tmp_path / "ckpt").glob("teacher-outputs-*.pt"))) == 1
    for live, cached in zip(runs["live"]["history"], runs["cached"]["history"], strict=True):
        assert live.keys() == cached.keys()
        for key in ("total", "distill", "rank", "lagrangian", "expected_macs", "macs_ratio", "dev_score"):
            assert key not in live or cached[key] == pytest.approx(live[key], rel=1e-4, abs=1e-6), key

    def recompute(*args, **kwargs):
        raise AssertionError("the teacher outputs were computed again")

    monkeypatch.setattr(teacher_cache, "compute_teacher_outputs", recompute)
    teacher, student = load_models(tmp_path / "teacher", short)
    again = train_token_pruning(teacher, student, spec, splits, tokenizer, short, 24, teacher_store=store)[2]
    assert again["teacher_outputs"]["source"] == "read"
    assert [record["total"] for record in again["history"]] == [record["total"] for record in runs["cached"]["history"]]
    assert again["device"] == "cpu" and again["dtype"] == "float32"


def test_a_file_for_another_split_is_computed_again(toy_top):
    params, spec, splits, tokenizer, tmp_path = toy_top
    teacher, _ = load_models(tmp_path / "teacher", params.prune)
    store = TeacherOutputStore(tmp_path / "ckpt", "digest")
    names = output_names(spec, False)
    cpu = torch.device("cpu")
    path = store.path(splits["train"], 24, names, torch.float32)
    smaller = splits["train"].select(range(10))
    _, first = cached_teacher_outputs(teacher, smaller, tokenizer, spec, names, 8, 24, cpu, "auto", store)
    store.path(smaller, 24, names, torch.float32).rename(path)  # a file under the wrong key
    outputs, second = cached_teacher_outputs(
        teacher, splits["train"], tokenizer, spec, names, 8, 24, cpu, "auto", store
    )
    assert first["source"] == second["source"] == "computed" and outputs.examples == len(splits["train"])


def test_the_cost_study_times_both_steps_on_a_tiny_model(toy_top, monkeypatch):
    params, _, splits, _, tmp_path = toy_top
    monkeypatch.chdir(tmp_path)  # the experiment file goes under ./artifacts/metrics/experiments
    path = teacher_cache_cost.measure(params, tmp_path / "prepared", tmp_path / "teacher", steps=2, examples=20)
    record = json.loads(path.read_text(encoding="utf-8"))
    assert path.name == "teacher-cache-cost-toy-24.json" and record["why"].startswith("Benchmark: what caching")
    assert record["timed_examples"] == 20 and record["train_examples"] == len(splits["train"])
    assert set(record["median_step_seconds"]) == {"live_teacher", "cached_teacher"}
    assert all(value > 0 for value in record["median_step_seconds"].values())
    assert record["cache_seconds_per_example"] > 0
