"""Every GLUE task's original TSV layout (fixtures for the tasks not in ../shared/data), the hub layout,
and user-declared TSV/CSV datasets, all read into the same internal form."""

import gzip

import datasets
import pytest

from top.data import sources
from top.data.sources import from_hub_layout, load_task, resolve_data_dir
from top.data.tasks import GLUE_TASKS, custom_task
from top.errors import DataError
from top.params import CustomDatasetParams

from .glue_fixtures import write_glue_fixtures


@pytest.fixture(scope="module")
def glue_fixture_root(tmp_path_factory):
    return write_glue_fixtures(tmp_path_factory.mktemp("glue-fixtures"))


@pytest.mark.parametrize(
    ("task", "sizes", "first_label"),
    [
        ("rte", {"train": 3, "eval": 2}, 0),
        ("stsb", {"train": 3, "eval": 2}, 5.0),
        ("wnli", {"train": 2, "eval": 2}, 1),
        ("qqp", {"train": 2, "eval": 2}, 0),
        ("mnli", {"train": 3, "eval": 1, "eval_mismatched": 2}, 1),
    ],
)
def test_fixture_layouts(glue_fixture_root, task, sizes, first_label):
    _, splits, _ = load_task(GLUE_TASKS[task], glue_fixture_root)
    assert {name: len(split) for name, split in splits.items()} == sizes
    assert splits["train"][0]["label"] == pytest.approx(first_label)
    assert splits["train"][0]["text_b"]


def test_rte_field_starting_with_quote_is_kept_verbatim(glue_fixture_root):
    _, splits, _ = load_task(GLUE_TASKS["rte"], glue_fixture_root)
    assert splits["train"][2]["text_a"] == '"Quoted" start of a field.'


def test_hub_layout_is_converted_to_the_internal_form():
    hub = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"premise": ["p"], "hypothesis": ["h"], "label": [2], "idx": [0]}),
            "validation_matched": datasets.Dataset.from_dict(
                {"premise": ["a"], "hypothesis": ["b"], "label": [0], "idx": [0]}
            ),
            "validation_mismatched": datasets.Dataset.from_dict(
                {"premise": ["c"], "hypothesis": ["d"], "label": [1], "idx": [0]}
            ),
        }
    )
    converted = from_hub_layout(GLUE_TASKS["mnli"], hub)
    assert converted["train"][0] == {"text_a": "p", "label": 2, "text_b": "h"}
    assert converted["eval_mismatched"][0]["label"] == 1


def test_hub_rows_without_labels_are_rejected():
    hub = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"sentence": ["x"], "label": [-1]}),
            "validation": datasets.Dataset.from_dict({"sentence": ["y"], "label": [1]}),
        }
    )
    with pytest.raises(DataError, match="unlabelled rows"):
        from_hub_layout(GLUE_TASKS["sst2"], hub)


def test_hub_failure_explains_the_offline_setting(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(sources.datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"could not load GLUE task sst2 from the Hugging Face hub.*TOP_DATA_DIR"):
        load_task(GLUE_TASKS["sst2"], None)


def test_custom_gzipped_tsv_and_csv(tmp_path):
    with gzip.open(tmp_path / "train.tsv.gz", "wt", encoding="utf-8") as handle:
        handle.write('label\ttext\npos\t"great" film\nneg\tdull\n')
    (tmp_path / "test.csv").write_text('label,text\npos,"fine, really"\nneg,"said ""no"""\n', encoding="utf-8")
    params = CustomDatasetParams(
        train="train.tsv.gz", eval="test.csv", text_columns=["text"], label_column="label", labels=None
    )
    spec, splits, _ = load_task(custom_task("reviews", params), tmp_path)
    assert spec.raw_labels == ("neg", "pos")
    assert splits["train"]["text_a"] == ['"great" film', "dull"]
    assert splits["eval"]["text_a"] == ["fine, really", 'said "no"']
    assert splits["eval"]["label"] == [1, 0]


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TOP_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path.resolve()
    monkeypatch.delenv("TOP_DATA_DIR")
    assert resolve_data_dir(None) is None
    with pytest.raises(DataError, match=r"does not exist"):
        resolve_data_dir(str(tmp_path / "missing"))
