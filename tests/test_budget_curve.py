"""The budget-curve study: prune-stage runs per setting, target and seed with the baselines at each run's MACs,
summarised as mean and std over seeds, kept in a record that a rerun completes instead of repeating."""

import json
import statistics

import pytest

from studies import budget_curve


def test_the_study_summarises_seeds_and_resumes_with_what_it_lacks(toy_top, monkeypatch):
    params, _, splits, _, tmp_path = toy_top
    # Every checkpoint within the budget's tolerance: the toy search is too short to land on it.
    prune = params.prune.model_copy(update={"epochs": 2, "eval_steps": 4, "macs_tolerance": 1.0})
    params = params.model_copy(update={"prune": prune})
    monkeypatch.chdir(tmp_path)  # the record goes under ./artifacts/metrics/experiments
    args = (params, ["default"], [0.6], [1, 2], tmp_path / "prepared", tmp_path / "teacher")
    path = budget_curve.study(*args)

    record = json.loads(path.read_text(encoding="utf-8"))
    assert path.name == "budget-curve-toy.json" and record["why"].startswith("Study: ToP's dev score")
    assert record["train_rows"] == len(splits["train"])
    runs = [record["runs"][f"default @ 0.6 / seed {seed}"] for seed in (1, 2)]
    for run in runs:
        assert run["target"] == 0.6 and run["setting"] == {}
        assert -1 <= run["distilled_layer_tau"] <= 1 and run["static_topk"] is not None
        assert 0 < run["train_macs_ratio"] <= 1
    cell = record["summary"]["default @ 0.6"]
    assert cell["seeds"] == [1, 2]
    for score in ("top", "macs_ratio", "train_macs_ratio", "search_end_macs_ratio", "static_topk"):
        values = [run[score] for run in runs]
        assert cell[score]["mean"] == pytest.approx(statistics.fmean(values), abs=1e-4)
        assert cell[score]["std"] == pytest.approx(statistics.stdev(values), abs=1e-4)
    assert path.with_suffix(".png").stat().st_size > 0

    def must_not_rerun(*args):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(budget_curve, "budget_run", must_not_rerun)
    assert json.loads(budget_curve.study(*args).read_text(encoding="utf-8"))["runs"] == record["runs"]


def test_paired_effects_compare_the_default_with_a_setting_seed_by_seed():
    def run(seed: int, top: float, tau: float) -> dict:
        return {"seed": seed, "top": top, "macs_ratio": 0.3, "distilled_layer_tau": tau}

    runs = {
        "default @ 0.3 / seed 1": run(1, 0.80, 0.2),
        "default @ 0.3 / seed 2": run(2, 0.70, 0.1),
        "no-distillation @ 0.3 / seed 1": run(1, 0.78, 0.1),
        "no-distillation @ 0.3 / seed 2": run(2, 0.64, 0.1),
        "no-distillation @ 0.3 / seed 3": run(3, 0.10, 0.0),  # no default run at seed 3: no pair
        "no-distillation @ 0.5 / seed 1": run(1, 0.90, 0.0),  # no default run at 0.5: no pair
    }
    effects = budget_curve.paired_effects(runs)
    assert list(effects) == ["default - no-distillation @ 0.3"]
    cell = effects["default - no-distillation @ 0.3"]
    assert cell["seeds"] == [1, 2]
    assert cell["top"]["mean"] == pytest.approx(0.04) and cell["top"]["std"] == pytest.approx(
        statistics.stdev([0.02, 0.06]), abs=1e-4
    )
    assert cell["distilled_layer_tau"] == {"mean": 0.05, "std": pytest.approx(statistics.stdev([0.1, 0.0]), abs=1e-4)}
    assert cell["macs_ratio"] == {"mean": 0.0, "std": 0.0}


def test_summary_orders_settings_and_targets_and_names_unusual_prune_layers():
    def run(seed: int, layers: list[int]) -> dict:
        return {"seed": seed, "prune_layers": layers} | dict.fromkeys(budget_curve.SCORES, 0.5)

    runs = {
        "no-distillation @ 0.3 / seed 1": run(1, [2, 3]),
        "default @ 0.2 / seed 1": run(1, [1, 2, 3]),
        "default @ 0.5 / seed 1": run(1, [2, 3]),
        "default @ 0.5 / seed 2": {key: value for key, value in run(2, []).items() if key != "prune_layers"},
    }
    summary = budget_curve.summarize(runs)
    assert list(summary) == ["default @ 0.5", "default @ 0.2", "no-distillation @ 0.3"]
    assert summary["default @ 0.2"]["prune_layers"] == [1, 2, 3]
    assert summary["default @ 0.5"]["prune_layers"] == [2, 3]  # the one run that records them


def test_a_target_under_the_searchs_floor_prunes_from_layer_1(toy_top):
    params, _, _, _, tmp_path = toy_top
    late = params.prune.model_copy(update={"prune_layers": [2]})  # layers 0 and 1 of 3 dense: the floor is over 2/3

    def layers(target: float) -> list[int]:
        prune = late.model_copy(update={"target_macs": target})
        return budget_curve.reachable_prune_layers(prune, tmp_path / "prepared", tmp_path / "teacher")

    assert layers(0.9) == [2]
    assert layers(0.5) == [1, 2]
