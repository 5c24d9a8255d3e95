"""`python -m pipeline.record`: a finished run's metrics, trajectory and changed params in one experiments file."""

import json
import subprocess

import pytest
import yaml

from pipeline.record import changed_params, main


def git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def finished_run(tmp_path):
    params = {"data": {"task": "mrpc", "qa": {"stride": 128}}, "prune": {"epochs": 6, "target_macs": 0.5}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "params.yaml")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "params")
    params["prune"]["epochs"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    metrics = tmp_path / "artifacts" / "metrics"
    metrics.mkdir(parents=True)
    (metrics / "teacher.json").write_text(json.dumps({"f1": 0.88}), encoding="utf-8")
    (metrics / "prune.json").write_text(json.dumps({"f1": 0.86, "history": [1]}), encoding="utf-8")
    live = tmp_path / "artifacts" / "prune_live"
    live.mkdir()
    (live / "history.tsv").write_text("step\tphase\tf1\trank\n50\tsearch\t0.87\t\n60\tfinetune\t0.86\t3.3\n")
    return tmp_path


def test_a_run_is_recorded_with_its_changed_params_metrics_and_trajectory(finished_run, capsys):
    main(["my-run", "--why", "a test", "--command", "dvc repro prune", "--root", str(finished_run)])
    record = json.loads((finished_run / "artifacts/metrics/experiments/my-run.json").read_text(encoding="utf-8"))
    assert record["params_changed_from_defaults"] == ["prune.epochs=3"]
    assert record["command"] == "dvc repro prune" and record["why"] == "a test"
    assert record["teacher"] == {"f1": 0.88} and record["prune"] == {"f1": 0.86}
    assert record["history"] == [
        {"step": 50.0, "phase": "search", "f1": 0.87},
        {"step": 60.0, "phase": "finetune", "f1": 0.86, "rank": 3.3},
    ]
    assert len(record["code_commit"]) >= 7 and "uncommitted" not in record["code_commit"]
    assert "my-run.json" in capsys.readouterr().out


def test_changed_params_names_nested_and_new_keys():
    committed = {"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}
    current = {"a": {"b": 1, "c": {"d": [1, 3]}, "f": None}, "e": "x"}
    assert changed_params(committed, current) == ["a.c.d=[1, 3]", "a.f=null"]


def test_a_checkout_without_metrics_is_a_clear_error(finished_run, capsys):
    for path in (finished_run / "artifacts" / "metrics").iterdir():
        path.unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["empty", "--why", "nothing ran", "--root", str(finished_run)])
    assert exit_info.value.code == 2
    assert "no stage metrics" in capsys.readouterr().err
    assert not (finished_run / "artifacts/metrics/experiments").exists()
