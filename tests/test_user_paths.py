"""Relative paths are resolved once, where the user gave them, and handed on absolute: the services' environment,
the flow's parameters, the run workspace's params, and a stage's error naming the path as given and as resolved."""

import json

import pytest
import yaml

from flows.compress import absolute_inputs
from flows.services import data_root_note, served_env
from flows.workspace import create_workspace
from top.data.paths import GIVEN_PATHS_ENV, absolute_env, absolute_params, recorded_paths
from top.data.sources import resolve_data_dir
from top.errors import DataError

from .stage_runner import init_dvc_repo, stage_env


def test_relative_data_dir_variable_is_made_absolute_and_its_form_recorded(tmp_path):
    env = {"TOP_DATA_DIR": "../data", "HF_HOME": "/abs/hf", "PATH": "bin"}
    resolved = absolute_env(env, tmp_path / "project")
    data_dir = str((tmp_path / "data").resolve())
    assert resolved["TOP_DATA_DIR"] == data_dir
    assert resolved["HF_HOME"] == "/abs/hf" and resolved["PATH"] == "bin"  # absolute or not a path: as it was
    assert recorded_paths(resolved) == {data_dir: "../data"}
    # Handing it on again, from anywhere, changes nothing and keeps the form the user gave.
    assert absolute_env(resolved, tmp_path / "elsewhere") == resolved
    assert env["TOP_DATA_DIR"] == "../data"  # the caller's mapping is left alone


def test_services_hand_on_an_absolute_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TOP_DATA_DIR", "../data")
    (tmp_path / "data").mkdir()
    env = served_env(4200, tmp_path / "state", base=tmp_path / "project")
    data_dir = (tmp_path / "data").resolve()
    assert env["TOP_DATA_DIR"] == str(data_dir) and env["PREFECT_HOME"] == str(tmp_path / "state")
    assert data_root_note(env) == f"served runs read data from ../data (from $TOP_DATA_DIR, resolved to {data_dir})"


def test_stage_names_a_missing_data_dir_as_given_and_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOP_DATA_DIR", "missing")
    monkeypatch.delenv(GIVEN_PATHS_ENV, raising=False)
    missing = tmp_path.resolve() / "missing"
    with pytest.raises(DataError) as error:
        resolve_data_dir(None)
    assert str(error.value) == f"data directory missing (from $TOP_DATA_DIR, resolved to {missing}) does not exist"
    with pytest.raises(DataError, match=rf"^data directory {missing} \(from data.data_dir\) does not exist$"):
        resolve_data_dir(str(missing))


def test_orchestrated_stage_names_the_form_the_user_gave(tmp_path, monkeypatch):
    """The services resolved ../nowhere against the project; the stage, in a clone, still names it as given."""
    monkeypatch.setenv("TOP_DATA_DIR", "../nowhere")
    env = served_env(4200, tmp_path / "state", base=tmp_path / "project")
    nowhere = (tmp_path / "nowhere").resolve()
    note = f"warning: data directory ../nowhere (from $TOP_DATA_DIR, resolved to {nowhere}) does not exist"
    assert data_root_note(env).startswith(note)
    clone = tmp_path / "project" / ".work" / "runs" / "run-a"
    clone.mkdir(parents=True)
    monkeypatch.chdir(clone)
    monkeypatch.setenv("TOP_DATA_DIR", env["TOP_DATA_DIR"])
    monkeypatch.setenv(GIVEN_PATHS_ENV, env[GIVEN_PATHS_ENV])
    with pytest.raises(DataError, match=r"^data directory \.\./nowhere \(from \$TOP_DATA_DIR, resolved to "):
        resolve_data_dir(None)


def test_path_params_are_made_absolute_and_hub_names_kept(tmp_path):
    (tmp_path / "org" / "local-bert").mkdir(parents=True)
    values = {
        "data.data_dir": "../data",
        "model.backbone": "./bert",
        "prune.epochs": 3,
    }
    resolved, given = absolute_params(values, tmp_path)
    assert resolved["data.data_dir"] == str((tmp_path.parent / "data").resolve())
    assert resolved["model.backbone"] == str((tmp_path / "bert").resolve()) and resolved["prune.epochs"] == 3
    assert given == {resolved["data.data_dir"]: "../data", resolved["model.backbone"]: "./bert"}
    for hub_name in ("sentence-transformers/all-MiniLM-L6-v2", "bert-base-uncased"):
        assert absolute_params({"model.backbone": hub_name}, tmp_path)[0]["model.backbone"] == hub_name
    # A name that is a directory where the user is, is that directory (as the stages would load it from there).
    local = absolute_params({"model.backbone": "org/local-bert"}, tmp_path)[0]["model.backbone"]
    assert local == str((tmp_path / "org" / "local-bert").resolve())
    assert absolute_params({"data.data_dir": None}, tmp_path) == ({"data.data_dir": None}, {})


def test_flow_hands_on_absolute_paths(tmp_path):
    base = tmp_path / "cwd"
    project, overrides, env = absolute_inputs(
        "project",
        {"data.data_dir": "data", "prune.epochs": 2},
        given_paths={"/from/parent": "parent"},
        base=base,
        environ={"TOP_DATA_DIR": "../shared", "PATH": "bin"},
    )
    data_dir, shared = str((base / "data").resolve()), str((tmp_path / "shared").resolve())
    assert project == (base / "project").resolve()
    assert overrides == {"data.data_dir": data_dir, "prune.epochs": 2}
    assert env["TOP_DATA_DIR"] == shared and "PATH" not in env  # only what changes
    assert json.loads(env[GIVEN_PATHS_ENV]) == {data_dir: "data", shared: "../shared", "/from/parent": "parent"}


def test_workspace_makes_committed_relative_paths_absolute(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    params = {"data": {"task": "mrpc", "data_dir": "../data"}, "model": {"backbone": "bert-base-uncased"}}
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    init_dvc_repo(project, stage_env(tmp_path))
    workspace, stage_overlay = create_workspace(project, "run-a", {"data.task": "sst2"}, {"KEPT": "1"})
    written = yaml.safe_load((workspace / "params.yaml").read_text(encoding="utf-8"))
    data_dir = str((tmp_path / "data").resolve())
    assert written["data"] == {"task": "sst2", "data_dir": data_dir}
    assert written["model"]["backbone"] == "bert-base-uncased"
    assert stage_overlay["KEPT"] == "1" and recorded_paths(stage_overlay) == {data_dir: "../data"}
