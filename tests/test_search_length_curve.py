"""The search-length learning curve: drawn from complete records, a one-line error for a missing or partial one."""

import json

import pytest

from studies import search_length_curve


def write_record(directory, name, search_steps, score, with_baselines=True):
    record = {
        "prune": {"accuracy": score},
        "history": [
            {"step": search_steps / 2, "phase": "search", "dev_score": score - 0.1},
            {"step": search_steps, "phase": "search", "dev_score": score - 0.05},
            {"step": search_steps + 10, "phase": "finetune", "dev_score": score},
        ],
    }
    if with_baselines:
        record["baselines"] = {
            "metric": "accuracy",
            "teacher": 0.8,
            "top": score,
            "static_topk": 0.1,
            "truncation": 0.5,
        }
    (directory / f"{name}.json").write_text(json.dumps(record), encoding="utf-8")


def test_the_curve_orders_runs_by_search_length(tmp_path, monkeypatch):
    monkeypatch.setattr(search_length_curve, "EXPERIMENTS_DIR", tmp_path)
    write_record(tmp_path, "long", 40, 0.75)
    write_record(tmp_path, "short", 10, 0.6)
    search_length_curve.main(["curve", "long", "short"])
    assert (tmp_path / "curve.png").stat().st_size > 0
    records = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("long", "short")]
    points = [search_length_curve.curve_point(record) for record in records]
    assert [(point["search_steps"], point["search_end"], point["finetune_end"]) for point in points] == [
        (40, pytest.approx(0.70), 0.75),
        (10, pytest.approx(0.55), 0.6),
    ]


@pytest.mark.parametrize("exists", [True, False])
def test_a_missing_or_partial_record_is_one_line(tmp_path, monkeypatch, exists):
    monkeypatch.setattr(search_length_curve, "EXPERIMENTS_DIR", tmp_path)
    if exists:
        write_record(tmp_path, "partial", 10, 0.6, with_baselines=False)
    with pytest.raises(SystemExit, match="has no baselines" if exists else "no record"):
        search_length_curve.main(["curve", "partial"])
    assert not list(tmp_path.glob("*.png"))


def test_an_output_path_instead_of_a_name_is_one_line(capsys):
    with pytest.raises(SystemExit):
        search_length_curve.main(["artifacts/metrics/experiments/curve.png", "run"])
    assert "OUTPUT must be a name" in capsys.readouterr().err
