"""The constraint-landing study: a search without fine-tuning per setting and target, its trajectory and whether it
ends within the tolerance of the target, kept in a record that a rerun completes instead of repeating."""

import json

import pytest

from studies import constraint_landing


def test_the_study_records_where_each_search_ends_and_resumes_with_what_it_lacks(toy_top, monkeypatch):
    params, _, _, _, tmp_path = toy_top
    params = params.model_copy(update={"prune": params.prune.model_copy(update={"epochs": 4, "eval_steps": 4})})
    monkeypatch.chdir(tmp_path)  # the record goes under ./artifacts/metrics/experiments
    path = constraint_landing.study(params, ["authors-masks-0.1"], [0.6], tmp_path / "prepared", tmp_path / "teacher")

    record = json.loads(path.read_text(encoding="utf-8"))
    assert path.name == "constraint-landing-toy.json" and record["why"].startswith("Study: where the ToP search")
    run = record["runs"]["authors-masks-0.1 @ 0.6"]
    assert run["overrides"] == constraint_landing.SETTINGS["authors-masks-0.1"] and run["target"] == 0.6
    trajectory = run["trajectory"]
    assert [point["step"] for point in trajectory] == sorted(point["step"] for point in trajectory)
    assert trajectory[-1]["step"] == run["steps"] and trajectory[-1]["target"] == pytest.approx(0.6)
    assert run["end_macs_ratio"] == trajectory[-1]["macs_ratio"]
    assert run["landed"] == (abs(run["end_macs_ratio"] - 0.6) <= params.prune.macs_tolerance)
    assert path.with_suffix(".png").stat().st_size > 0

    def must_not_rerun(*args):
        raise AssertionError("a finished run was searched again")

    monkeypatch.setattr(constraint_landing, "search_run", must_not_rerun)
    again = constraint_landing.study(params, ["authors-masks-0.1"], [0.6], tmp_path / "prepared", tmp_path / "teacher")
    assert json.loads(again.read_text(encoding="utf-8"))["runs"] == record["runs"]
