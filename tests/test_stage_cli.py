"""Stage entry points as DVC runs them: user errors are one clear line and exit code 2, never a
traceback, and leave no output behind; a killed teacher run resumes from its last checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import toy_dataset, use_toy_task
from .stage_runner import run_stage, scratch_project, stage_env


def assert_clean_failure(result, message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr


def test_bad_param_fails_cleanly(params_dict, tmp_path):
    params_dict["teacher"]["batch_size"] = -4
    project = scratch_project(tmp_path / "p", params_dict)
    result = run_stage("prepare", project, stage_env(tmp_path))
    assert_clean_failure(result, "error: stage prepare: teacher.batch_size must be at least 1; got -4")
    assert not (project / "data").exists()


def test_missing_data_fails_cleanly(params_dict, tmp_path):
    params_dict["data"]["data_dir"] = str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    project = scratch_project(tmp_path / "p", params_dict)
    result = run_stage("prepare", project, stage_env(tmp_path))
    assert_clean_failure(result, "GLUE task directory not found")
    assert not (project / "data").exists()


def test_teacher_without_prepared_data_fails_cleanly(params_dict, tmp_path):
    project = scratch_project(tmp_path / "p", params_dict)
    result = run_stage("teacher", project, stage_env(tmp_path))
    assert_clean_failure(result, "run the prepare stage first")


def test_non_bert_backbone_fails_cleanly(params_dict, tmp_path):
    not_bert = tmp_path / "gpt"
    not_bert.mkdir()
    (not_bert / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    params_dict["model"]["backbone"] = str(not_bert)
    project = scratch_project(tmp_path / "p", params_dict)
    result = run_stage("prepare", project, stage_env(tmp_path))
    assert_clean_failure(result, "holds a 'gpt2' model")


def test_killed_teacher_resumes_from_last_checkpoint(params_dict, tiny_bert_dir, tmp_path):
    toy_dataset(tmp_path, rows=400)
    use_toy_task(params_dict, tmp_path, labels=["0", "1"])
    params_dict["model"]["backbone"] = str(tiny_bert_dir)
    params_dict["teacher"].update(epochs=4, batch_size=2, save_steps=20, device="cpu", threads=1)
    project = scratch_project(tmp_path / "p", params_dict)
    env = stage_env(tmp_path)
    assert run_stage("prepare", project, env).returncode == 0

    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.teacher"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        checkpoint = wait_for_checkpoint(project / "artifacts/checkpoints", process, timeout=300)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (project / "artifacts/teacher").exists(), "a killed run must not leave a model behind"
    assert not (project / "artifacts/metrics/teacher.json").exists()

    result = run_stage("teacher", project, env)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((project / "artifacts/metrics/teacher.json").read_text())
    resumed_step = int(metrics["resumed_from_checkpoint"].rsplit("-", 1)[1])
    assert resumed_step >= int(checkpoint.name.rsplit("-", 1)[1]) > 0
    assert (project / "artifacts/teacher/model.safetensors").is_file()


def wait_for_checkpoint(root: Path, process: subprocess.Popen, timeout: float) -> Path:
    """Block until Trainer has fully written (trainer_state.json last) at least one checkpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sorted(root.glob("teacher-*/checkpoint-*/trainer_state.json"))
        if done:
            return done[0].parent
        assert process.poll() is None, "the teacher stage ended before writing a checkpoint"
        time.sleep(0.2)
    raise AssertionError("no checkpoint written in time")
