"""The ToP model as one graph (ranking, top-k and gather inside) and in ONNX Runtime: it computes the masked
oracle's logits at every batch shape, and the saved ONNX files reload and run in two lines."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig

from top.backbone import load_tokenizer
from top.peers import OrtModel, build_peers, onnx_file
from top.pruning.model import TokenPruningBertForSequenceClassification
from top.pruning.onnx_graph import PrunedLogitsGraph

from .test_peers import toy_texts


@pytest.fixture(scope="module")
def top_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 4-layer ToP classifier that prunes before layers 1, 2 and 3 (hard keep ratios, 0 included)."""
    config = BertConfig.from_pretrained(tiny_bert_dir, num_hidden_layers=4, num_labels=3)
    config.prune_layers, config.keep_ratios = [1, 2, 3], [0.7, 0.45, 0.0]
    torch.manual_seed(3)
    directory = tmp_path_factory.mktemp("top")
    TokenPruningBertForSequenceClassification(config).eval().save_pretrained(directory)
    load_tokenizer(str(tiny_bert_dir)).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def model(top_dir: Path) -> TokenPruningBertForSequenceClassification:
    return TokenPruningBertForSequenceClassification.from_pretrained(str(top_dir)).eval()


def batches(top_dir: Path) -> list[dict[str, torch.Tensor]]:
    """Batch 1 unpadded, a padded pair batch of mixed lengths, and a row longer than the export example."""
    tokenizer = load_tokenizer(str(top_dir))
    return [
        dict(tokenizer(["a dog barks at the red house"], return_tensors="pt")),
        dict(tokenizer(toy_texts(6, seed=4), ["many birds sing"] * 6, padding=True, return_tensors="pt")),
        dict(tokenizer([" ".join(["cats", "purr"] * 40)], return_tensors="pt")),
    ]


def test_the_graph_computes_the_masked_oracle(model, top_dir):
    graph = PrunedLogitsGraph(model)
    for batch in batches(top_dir):
        with torch.no_grad():
            expected = model(**batch, mode="masked").logits
            torch.testing.assert_close(graph(**batch), expected, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(model(**batch, mode="physical").logits, expected, atol=1e-5, rtol=1e-4)


def test_onnx_runtime_runs_the_pruned_graph_and_reloads_from_disk(model, top_dir, tmp_path):
    built = build_peers(["ort-fp32", "ort-int8"], top_dir, tmp_path, 1, list, family="top")
    fp32_file, int8_file = (tmp_path / onnx_file("top", precision) for precision in ("fp32", "int8"))
    assert fp32_file.is_file() and int8_file.is_file()
    assert int8_file.stat().st_size < fp32_file.stat().st_size
    reloaded = OrtModel(fp32_file, threads=1)  # the deployment form: a path and a thread count
    for batch in batches(top_dir):
        with torch.no_grad():
            expected = model(**batch, mode="masked").logits
        for runtime_model in (built["ort-fp32"], reloaded):
            torch.testing.assert_close(runtime_model(**batch).logits, expected, atol=1e-4, rtol=1e-3)
        assert built["ort-int8"](**batch).logits.shape == expected.shape
