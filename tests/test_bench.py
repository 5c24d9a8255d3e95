"""The benchmark's timing loop, driven by a fake clock: which calls are timed, in what order, and the speed-ups."""

from __future__ import annotations

from typing import Any

import datasets
import pytest
import torch

from top.backbone import load_tokenizer
from top.bench import SPEEDUP_KEYS, Timing, Variant, run_benchmark


class FakeMachine:
    """A clock that each model call advances by its cost, times a slowness that the test schedules per call."""

    def __init__(self, slow_calls: range = range(0), slowness: float = 3.0) -> None:
        self.now = 0.0
        self.calls: list[tuple[str, int, int]] = []  # (model, batch size, first input id of the batch)
        self.slow_calls = slow_calls
        self.slowness = slowness

    def clock(self) -> float:
        return self.now

    def variant(self, family: str, runtime: str, cost_per_example: float, precision: str = "fp32") -> Variant:
        def run(batch: dict[str, torch.Tensor]) -> None:
            factor = self.slowness if len(self.calls) in self.slow_calls else 1.0
            self.calls.append((f"{family}-{runtime}", batch["input_ids"].shape[0], int(batch["input_ids"][0, 1])))
            self.now += factor * cost_per_example * batch["input_ids"].shape[0]

        return Variant(family, precision, runtime, run)


@pytest.fixture
def split_and_tokenizer(tiny_bert_dir) -> tuple[datasets.Dataset, Any]:
    rows = [{"input_ids": [101, 1000 + index, *[1996] * (index % 5), 102]} for index in range(12)]
    for row in rows:
        row["attention_mask"] = [1] * len(row["input_ids"])
    return datasets.Dataset.from_list(rows), load_tokenizer(str(tiny_bert_dir))


def _bench(machine: FakeMachine, variants: list[Variant], split_and_tokenizer, timing: Timing) -> list[dict]:
    split, tokenizer = split_and_tokenizer
    return run_benchmark(variants, split, tokenizer, [1, 4], 16, timing, clock=machine.clock)


def test_rounds_interleave_the_models_on_the_same_batches(split_and_tokenizer):
    machine = FakeMachine()
    variants = [machine.variant("dense", "eager", 2.0), machine.variant("top", "eager", 1.0)]
    _bench(machine, variants, split_and_tokenizer, Timing(warmup=1, repetitions=5, rounds=2))
    cases = 4  # 2 input kinds x 2 batch sizes
    warmups, timed = machine.calls[: 2 * cases], machine.calls[2 * cases :]
    assert [call[0] for call in warmups] == ["dense-eager"] * cases + ["top-eager"] * cases
    # Round 1 (2 calls each): every case runs dense then top; round 2 (3 calls each): top first.
    first, second = timed[: cases * 2 * 2], timed[cases * 2 * 2 :]
    assert [call[0] for call in first[:4]] == ["dense-eager"] * 2 + ["top-eager"] * 2
    assert [call[0] for call in second[:6]] == ["top-eager"] * 3 + ["dense-eager"] * 3
    assert len(second) == cases * 2 * 3
    for model in ("dense-eager", "top-eager"):  # both models saw the same batches in the same order
        assert [call[1:] for call in machine.calls if call[0] == model] == [
            call[1:] for call in machine.calls if call[0] == "dense-eager"
        ]


def test_a_slow_round_moves_neither_the_speedup_nor_its_range(split_and_tokenizer):
    """A slow spell over one whole round slows every model compared in it, so each round agrees on 2x."""
    variants_per_case, cases, calls_per_round = 2, 4, 4
    warmups = variants_per_case * cases
    round_length = variants_per_case * cases * calls_per_round
    machine = FakeMachine(slow_calls=range(warmups + round_length, warmups + 2 * round_length))
    variants = [machine.variant("dense", "eager", 2.0), machine.variant("top", "eager", 1.0)]
    rows = _bench(machine, variants, split_and_tokenizer, Timing(warmup=1, repetitions=20, rounds=5))
    top = [row for row in rows if row["family"] == "top"]
    assert len(top) == cases
    for row in top:
        assert row["speedup_vs_best_dense_fp32"] == pytest.approx(2.0)
        assert row["speedup_min_over_rounds"] == row["speedup_max_over_rounds"] == pytest.approx(2.0)
        assert row["round_medians_ms"][1] == pytest.approx(3 * row["round_medians_ms"][0])
        assert row["median_ms"] == pytest.approx(1000.0 * row["batch_size"])


def test_per_round_speedups_report_a_round_that_favoured_one_model(split_and_tokenizer):
    """A slow spell that catches only the dense model's turn in one round shows up in the range."""
    cases, calls_per_round = 4, 4
    warmups = 2 * cases
    # Round 1: the first case's dense calls are the first four timed calls.
    machine = FakeMachine(slow_calls=range(warmups, warmups + calls_per_round))
    variants = [machine.variant("dense", "eager", 2.0), machine.variant("top", "eager", 1.0)]
    rows = _bench(machine, variants, split_and_tokenizer, Timing(warmup=1, repetitions=20, rounds=5))
    first_case = next(row for row in rows if row["family"] == "top" and row["inputs"] == "dynamic")
    assert first_case["batch_size"] == 1
    assert first_case["speedup_vs_best_dense_fp32"] == pytest.approx(2.0)
    assert first_case["speedup_max_over_rounds"] == pytest.approx(6.0)
    assert first_case["speedup_min_over_rounds"] == pytest.approx(2.0)


def test_best_dense_variant_is_the_baseline_per_round(split_and_tokenizer):
    machine = FakeMachine()
    variants = [
        machine.variant("dense", "eager", 2.0),
        machine.variant("dense", "compiled", 1.6),
        machine.variant("top", "eager", 0.8),
    ]
    rows = _bench(machine, variants, split_and_tokenizer, Timing(warmup=0, repetitions=3, rounds=3))
    by_model = {row["model"]: row for row in rows if row["inputs"] == "padded" and row["batch_size"] == 4}
    assert by_model["top-fp32-eager"]["speedup_vs_best_dense_fp32"] == pytest.approx(2.0)
    assert by_model["dense-fp32-eager"]["speedup_vs_best_dense_fp32"] == pytest.approx(0.8)
    assert by_model["top-fp32-eager"]["round_medians_ms"] == pytest.approx([3200.0] * 3)


def test_fastest_dense_of_any_precision_and_runtime_is_the_second_baseline(split_and_tokenizer):
    """A dense INT8 peer in another runtime sets the second speed-up's baseline, never the FP32 one."""
    machine = FakeMachine()
    variants = [
        machine.variant("dense", "eager", 2.0),
        machine.variant("dense", "ort", 1.0, precision="int8"),
        machine.variant("top", "compiled", 0.5, precision="int8"),
    ]
    rows = _bench(machine, variants, split_and_tokenizer, Timing(warmup=0, repetitions=4, rounds=2))
    by_model = {row["model"]: row for row in rows if row["inputs"] == "dynamic" and row["batch_size"] == 1}
    top, peer = by_model["top-int8-compiled"], by_model["dense-int8-ort"]
    assert top["speedup_vs_best_dense_fp32"] == pytest.approx(4.0)
    assert top["speedup_vs_fastest_dense"] == pytest.approx(2.0)
    assert top["speedup_vs_fastest_dense_min_over_rounds"] == top["speedup_vs_fastest_dense_max_over_rounds"] == 2.0
    assert peer["speedup_vs_best_dense_fp32"] == pytest.approx(2.0) and peer["speedup_vs_fastest_dense"] == 1.0
    assert set(SPEEDUP_KEYS) <= set(top)


@pytest.mark.parametrize(("warmup", "repetitions", "rounds"), [(-1, 5, 1), (0, 5, 0), (0, 5, 6)])
def test_timing_rejects_impossible_settings(warmup, repetitions, rounds):
    with pytest.raises(ValueError, match="1 <= rounds <= repetitions"):
        Timing(warmup, repetitions, rounds)


def test_round_calls_split_the_repetitions_evenly():
    assert [len(calls) for calls in Timing(0, 20, 5).round_calls()] == [4] * 5
    assert [list(calls) for calls in Timing(0, 5, 2).round_calls()] == [[0, 1], [2, 3, 4]]
