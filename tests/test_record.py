"""`python -m studies.record`: a finished run's metrics, trajectory and changed params in one experiments file."""

import json
import subprocess
import sys

import pytest
import yaml

from studies.record import changed_params, main

from .stage_runner import init_dvc_repo, stage_env

# Two stand-in stages: each writes its metrics file; prune also writes a trajectory.
STAGE_SCRIPT = """import json, pathlib, sys
name = sys.argv[1]
pathlib.Path("artifacts/metrics").mkdir(parents=True, exist_ok=True)
pathlib.Path(f"artifacts/metrics/{name}.json").write_text(json.dumps({"f1": 0.5, "history": [1]}))
if name == "prune":
    pathlib.Path("artifacts/prune_live").mkdir(exist_ok=True)
    pathlib.Path("artifacts/prune_live/history.tsv").write_text("step\\tphase\\tf1\\trank\\n50\\tsearch\\t0.87\\t\\n")
"""


def dvc_yaml() -> dict:
    def stage(name: str, param: str, outs: list[str]) -> dict:
        return {
            "cmd": f"python stage.py {name}",
            "params": [param],
            "outs": outs,
            "metrics": [{f"artifacts/metrics/{name}.json": {"cache": False}}],
        }

    return {"stages": {"teacher": stage("teacher", "teacher.lr", []), "prune": stage("prune", "prune.epochs", [])}}


@pytest.fixture
def finished_run(tmp_path):
    env = stage_env(tmp_path / "env")
    root = tmp_path / "project"
    root.mkdir()
    (root / "stage.py").write_text(STAGE_SCRIPT, encoding="utf-8")
    (root / "params.yaml").write_text(yaml.safe_dump({"teacher": {"lr": 1}, "prune": {"epochs": 6}}))
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml(), sort_keys=False), encoding="utf-8")
    init_dvc_repo(root, env)
    reproduce = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    assert reproduce.returncode == 0, reproduce.stderr
    return root, env


def record(root, name="my-run"):
    main([name, "--why", "a test", "--command", "dvc repro", "--root", str(root)])
    return json.loads((root / f"artifacts/metrics/experiments/{name}.json").read_text(encoding="utf-8"))


def test_a_run_is_recorded_with_its_changed_params_metrics_and_trajectory(finished_run, capsys):
    root, env = finished_run
    (root / "params.yaml").write_text(yaml.safe_dump({"teacher": {"lr": 1}, "prune": {"epochs": 3}}))
    stale = record(root, "stale")
    assert stale["params_changed_from_defaults"] == ["prune.epochs=3"]
    assert stale["stale_stages_not_recorded"] == ["prune"] and "prune" not in stale and "history" not in stale
    assert stale["teacher"] == {"f1": 0.5, "history": [1]}

    subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=env, capture_output=True, check=True)
    fresh = record(root)
    assert fresh["stale_stages_not_recorded"] == [] and fresh["command"] == "dvc repro" and fresh["why"] == "a test"
    assert fresh["prune"] == {"f1": 0.5}  # the trajectory comes from history.tsv, numbers as floats
    assert fresh["history"] == [{"step": 50.0, "phase": "search", "f1": 0.87}]
    assert len(fresh["code_commit"]) >= 7
    assert "my-run.json" in capsys.readouterr().out


def test_changed_params_names_nested_and_new_keys():
    committed = {"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}
    current = {"a": {"b": 1, "c": {"d": [1, 3]}, "f": None}, "e": "x"}
    assert changed_params(committed, current) == ["a.c.d=[1, 3]", "a.f=null"]


def test_a_checkout_without_up_to_date_metrics_is_a_clear_error(finished_run, capsys):
    root, _ = finished_run
    for path in (root / "artifacts" / "metrics").iterdir():
        path.unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["empty", "--why", "nothing ran", "--root", str(root)])
    assert exit_info.value.code == 2
    assert "no up-to-date stage metrics" in capsys.readouterr().err
    assert not (root / "artifacts/metrics/experiments").exists()
