"""End to end with real components, the README's way: a relative $TOP_DATA_DIR exported before the services
start (what `make serve` runs, on a free loopback port), the served `top/compress` deployment, `prefect deployment
run` with parameter overrides, DVC experiments compared with `dvc exp diff`, failing stages whose clear errors
reach the Prefect logs, and every started process stopped by PID."""

import json
import re
import socket
import sys

import pytest

from flows.services import SERVICES, prefect_env, process_alive

from .conftest import tiny_pipeline_params
from .stage_runner import init_dvc_repo, run, scratch_project, stage_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served_project(params_dict, tiny_bert_dir, tmp_path):
    """The scratch project in tmp_path/project served with `TOP_DATA_DIR=../data` (data.data_dir null), relative
    to the directory the services start in, as the README exports it; the stages run in clones deeper down."""
    params = tiny_pipeline_params(params_dict, tiny_bert_dir, tmp_path / "data")
    params["data"]["data_dir"] = None
    project = scratch_project(tmp_path / "project", params)
    env = stage_env(tmp_path)
    init_dvc_repo(project, env)
    port = free_port()
    env |= prefect_env(port, project / ".work" / "prefect")
    env["TOP_DATA_DIR"] = "../data"
    # The Makefile's `serve` recipe, run from the project directory.
    started = run([sys.executable, "-m", "flows.services", "start", "--port", str(port)], project, env)
    assert started.returncode == 0, started.stdout + started.stderr
    data_dir = (tmp_path / "data").resolve()
    assert f"served runs read data from ../data (from $TOP_DATA_DIR, resolved to {data_dir})" in started.stdout
    pids = [int((project / ".work" / "prefect" / f"{service}.pid").read_text()) for service in SERVICES]
    try:
        yield project, env
    finally:
        stopped = run([sys.executable, "-m", "flows.services", "stop"], project, env)
        assert stopped.returncode == 0, stopped.stderr
        for pid in pids:
            assert not process_alive(pid), f"process {pid} still running after stop"


def deploy_run(project, env, *params: str, deployment: str = "top/compress"):
    args = ["prefect", "deployment", "run", deployment, "--watch", "--watch-timeout", "600"]
    for param in params:
        args += ["-p", param]
    result = run(args, project, env, timeout=700)
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout)
    return result, flow_run_id.group(1) if flow_run_id else None


def flow_run_logs(project, env, flow_run_id: str) -> str:
    return run(["prefect", "flow-run", "logs", flow_run_id], project, env).stdout


@pytest.mark.slow
def test_compress_deployment_records_dvc_experiments(served_project):
    project, env = served_project
    first, _ = deploy_run(project, env, "task=toy", "target_macs=0.5", "int8=false", "name=run-a")
    assert first.returncode == 0 and "in 'Completed'" in first.stdout, first.stdout[-3000:] + first.stderr[-3000:]

    shown = run(["dvc", "exp", "show", "--json"], project, env)
    assert shown.returncode == 0 and "run-a" in shown.stdout, shown.stdout[-2000:]

    # The tiny random model scores the same at every step, so the best checkpoint is the first that meets the
    # target: at 1.0 that is the unpruned one, a clearly different MACs ratio from run-a.
    second, second_id = deploy_run(project, env, "task=toy", "target_macs=1.0", "int8=false", "flex=true", "name=run-b")
    assert second.returncode == 0 and "in 'Completed'" in second.stdout, second.stdout[-3000:]
    logs = flow_run_logs(project, env, second_id)
    assert "prepare: up to date, skipped" in logs and "teacher: up to date, skipped" in logs
    assert "flex: ran" in logs and "flex_benchmark: ran" in logs

    diff = run(["dvc", "exp", "diff", "run-a", "run-b", "--json"], project, env)
    assert diff.returncode == 0, diff.stderr
    changes = json.loads(diff.stdout)
    prune = changes["metrics"]["artifacts/metrics/prune.json"]
    assert prune["target_macs"]["old"] == 0.5 and prune["target_macs"]["new"] == 1.0
    assert prune["macs_ratio_real_lengths"]["new"] > prune["macs_ratio_real_lengths"]["old"]
    assert "artifacts/metrics/flex.json" in changes["metrics"]  # only run-b ran the Flexible BERT stages

    failed, failed_id = deploy_run(project, env, "task=toy", 'overrides={"prune.bins": 0}', "name=run-bad")
    assert failed.returncode != 0 and "in state 'Failed'" in failed.stdout, failed.stdout[-3000:]
    logs = flow_run_logs(project, env, failed_id)
    assert "error: stage prune: prune.bins must be at least 1" in logs, logs[-3000:]
    assert "prepare: up to date, skipped" in logs  # the rerun starts at the first stage that has to run

    # A relative path in a run's parameters is relative to the directory the flow runs in: the project.
    missing, missing_id = deploy_run(
        project, env, "task=toy", 'overrides={"data.data_dir": "../missing"}', "name=run-missing"
    )
    assert missing.returncode != 0 and "in state 'Failed'" in missing.stdout, missing.stdout[-3000:]
    logs = flow_run_logs(project, env, missing_id)
    resolved = (project.parent / "missing").resolve()
    expected = f"error: stage prepare: data directory ../missing (from data.data_dir, resolved to {resolved})"
    assert f"{expected} does not exist" in logs, logs[-3000:]

    sweep, _ = deploy_run(project, env, "task=toy", "targets=[0.5, 1.0]", "int8=false", deployment="top-sweep/sweep")
    assert sweep.returncode == 0 and "in 'Completed'" in sweep.stdout, sweep.stdout[-3000:]
    table = (project / "artifacts" / "sweeps" / "toy" / "sweep.csv").read_text().splitlines()
    assert len(table) == 3 and table[0].startswith("experiment,target_macs,macs_ratio_real_lengths")
    assert (project / "artifacts" / "sweeps" / "toy" / "sweep.png").stat().st_size > 0
