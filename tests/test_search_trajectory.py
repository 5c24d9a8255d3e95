"""The search-trajectory figure: drawn from a record that has a trajectory, a one-line error otherwise."""

import json

import pytest

from studies import search_trajectory


def write_record(directory, name, with_trajectory=True):
    record = {
        "prune": {"keep_ratios": {"layer_2": 0.5, "layer_3": 0.4}},
        "history": [
            {"step": 4.0, "phase": "search", "macs_ratio": 0.6, "dev_score": 0.8},
            {"step": 6.0, "phase": "finetune", "macs_ratio": 0.5, "dev_score": 0.82},
        ],
    }
    if with_trajectory:
        record["trajectory"] = [
            {"step": step, "target": 1 - 0.1 * step, "expected_macs": 1 - 0.09 * step, "lambda1": 0.1 * step,
             "lambda2": 0.0, "keep_0": 1 - 0.1 * step, "keep_1": 1 - 0.12 * step}
            for step in (1.0, 2.0, 3.0, 4.0)
        ]  # fmt: skip
    (directory / f"{name}.json").write_text(json.dumps(record), encoding="utf-8")


def test_a_recorded_search_is_drawn_beside_its_record(tmp_path, monkeypatch):
    monkeypatch.setattr(search_trajectory, "EXPERIMENTS_DIR", tmp_path)
    write_record(tmp_path, "run")
    search_trajectory.main(["run"])
    assert (tmp_path / "run-trajectory.png").stat().st_size > 0


@pytest.mark.parametrize("exists", [True, False])
def test_a_record_without_trajectory_is_one_line(tmp_path, monkeypatch, exists):
    monkeypatch.setattr(search_trajectory, "EXPERIMENTS_DIR", tmp_path)
    if exists:
        write_record(tmp_path, "old", with_trajectory=False)
    with pytest.raises(SystemExit, match="has no search trajectory" if exists else "no record"):
        search_trajectory.main(["old"])
    assert not list(tmp_path.glob("*.png"))
