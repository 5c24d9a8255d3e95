"""INT8 with INC on a tiny model: it stays pruned, tracks FP32, saves, reloads and compiles."""

import pytest
import torch

from top.errors import ModelDirError
from top.pruning.model import TokenPruningBertForSequenceClassification, configure_pruning
from top.quantize import compiled_fp32, load_int8, quantize_int8, save_int8

from .conftest import tiny_bert_config


@pytest.fixture(scope="module")
def pruned_fp32():
    torch.manual_seed(0)
    config = configure_pruning(tiny_bert_config(num_labels=2), [1, 2], [0.6, 0.5])
    return TokenPruningBertForSequenceClassification(config).eval()


def batch(seed: int, size: int = 8, length: int = 20) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(size, length, dtype=torch.long)
    for row in range(size):
        mask[row, int(torch.randint(4, length + 1, (1,), generator=generator)) :] = 0
    return {"input_ids": torch.randint(0, 120, (size, length), generator=generator), "attention_mask": mask}


def test_int8_stays_pruned_tracks_fp32_and_reloads(pruned_fp32, tmp_path):
    int8, examples = quantize_int8(pruned_fp32, [batch(seed) for seed in range(4)])
    inputs = batch(99)
    with torch.no_grad():
        reference, quantized = pruned_fp32(**inputs), int8(**inputs)
    assert torch.equal(quantized.token_counts, reference.token_counts)  # same tokens removed, physically
    assert (quantized.logits - reference.logits).abs().max() < 0.1 * reference.logits.abs().max()

    save_int8(int8, examples, tmp_path / "int8")
    reloaded = load_int8(tmp_path / "int8")
    assert reloaded.config.keep_ratios == [0.6, 0.5]
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs).logits, quantized.logits, atol=1e-5)
        reloaded.compile_blocks()
        other = batch(7, size=3, length=11)  # a new batch size and length: dynamic shapes
        assert torch.allclose(reloaded(**other).logits, int8(**other).logits, atol=1e-3)
    with pytest.raises(ValueError, match=r"runs in .physical. mode only"):
        int8(**inputs, mode="masked")


def test_minmax_calibration_also_tracks_fp32_and_unknown_algorithm_is_named(pruned_fp32):
    int8, _ = quantize_int8(pruned_fp32, [batch(seed) for seed in range(4)], activation_algorithm="minmax")
    inputs = batch(99)
    with torch.no_grad():
        reference, quantized = pruned_fp32(**inputs), int8(**inputs)
    assert (quantized.logits - reference.logits).abs().max() < 0.1 * reference.logits.abs().max()
    with pytest.raises(ValueError, match="activation_algorithm must be one of"):
        quantize_int8(pruned_fp32, [batch(0)], activation_algorithm="mse")


def test_not_an_int8_dir(tmp_path):
    with pytest.raises(ModelDirError, match="not an INT8 model directory"):
        load_int8(tmp_path)


def test_int8_runs_blocks_pruned_to_cls_alone():
    """A deep prune leaves [CLS] alone (1-token blocks, 1-row FFN inputs), in calibration and at inference."""
    torch.manual_seed(0)
    config = configure_pruning(tiny_bert_config(num_labels=2), [1, 2], [0.05, 0.05])
    fp32 = TokenPruningBertForSequenceClassification(config).eval()
    calibration = [batch(seed, length=8) for seed in range(2)]
    int8, _ = quantize_int8(fp32, calibration)
    for inputs in (batch(99, length=8), batch(98, size=1, length=8)):
        with torch.no_grad():
            reference, quantized = fp32(**inputs), int8(**inputs)
        assert int(reference.token_counts[:, -1].max()) == 1  # the case under test: only [CLS] is left
        assert torch.equal(quantized.token_counts, reference.token_counts)
        assert (quantized.logits - reference.logits).abs().max() < 0.1 * reference.logits.abs().max()


def test_attention_graphs_run_fused_and_ranking_layers_hand_out_queries_and_keys(pruned_fp32):
    """No graph writes attention probabilities out. Layers 0 and 1 rank the tokens of prune layers 1 and 2:
    their graphs also return queries and keys, from which the eager code scores the tokens in length groups,
    as the FP32 model does; layers 2 and 3 return their output alone."""
    int8, _ = quantize_int8(pruned_fp32, [batch(0)])

    def graph(index: int) -> torch.fx.Graph:
        return int8._blocks[index]["attention"].graph

    def outputs(index: int) -> int:
        return len(next(node for node in graph(index).nodes if node.op == "output").args[0])

    assert not any("aten.softmax.int" in {str(node.target) for node in graph(index).nodes} for index in range(4))
    assert [outputs(index) for index in range(4)] == [3, 3, 1, 1]
    with torch.no_grad():
        scores = int8(**batch(5), return_scores=[0, 1]).token_scores
        expected = pruned_fp32(**batch(5), return_scores=[0, 1]).token_scores
        assert torch.allclose(scores[0], expected[0], atol=1e-3, rtol=0)
        with pytest.raises(ValueError, match="layer 2 of a blockwise model ranks no tokens"):
            int8(**batch(5), return_scores=[2])


def test_every_compiled_fp32_block_gets_its_own_graph(pruned_fp32):
    """Each block instance recompiles its class's forward; compile_blocks makes room for all of them, where Dynamo's
    limit would otherwise leave the blocks past it running eager (made to fail loudly here)."""
    import torch._dynamo

    torch._dynamo.reset()
    inputs = batch(5, size=4, length=12)
    with torch._dynamo.config.patch(recompile_limit=1, fail_on_recompile_limit_hit=True), torch.no_grad():
        compiled = compiled_fp32(pruned_fp32)
        assert torch.allclose(compiled(**inputs).logits, pruned_fp32(**inputs).logits, atol=1e-4)
