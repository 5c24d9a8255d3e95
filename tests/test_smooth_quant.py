"""SmoothQuant: the same function before quantization; the INT8 model built on it stays pruned and tracks FP32."""

import pytest
import torch
from torch import nn

from top.pruning.model import TokenPruningBertForSequenceClassification, configure_pruning
from top.quantize import _fp32_blocks, _smoothed_blocks, blockwise_class, quantize_int8
from top.smooth_quant import SmoothedLinear, record_input_maxima, smoothed_copy, smoothing_scale

from .conftest import tiny_bert_config
from .test_quantize import batch


def test_scale_formula_against_brute_force_and_bad_alpha():
    torch.manual_seed(0)
    activation_max, weight = torch.rand(6) * 10 + 0.1, torch.randn(4, 6)
    expected = [float(activation_max[j]) ** 0.3 / max(abs(float(w)) for w in weight[:, j]) ** 0.7 for j in range(6)]
    assert torch.allclose(smoothing_scale(activation_max, weight, 0.3), torch.tensor(expected), rtol=1e-5)
    with pytest.raises(ValueError, match="alpha must be in"):
        smoothing_scale(activation_max, weight, 1.2)


def test_smoothed_linear_computes_the_same_function_and_flattens_the_outlier_channel():
    torch.manual_seed(0)
    linear = nn.Linear(8, 5)
    inputs = torch.randn(64, 8)
    inputs[:, 3] *= 40  # an outlier channel, as BERT's LayerNorm outputs have
    (maxima,) = record_input_maxima([linear], lambda: linear(inputs))
    assert torch.allclose(maxima[""], inputs.abs().amax(dim=0))
    original = linear.weight.detach().clone()
    smoothed = smoothed_copy(linear, maxima, alpha=0.5)
    assert torch.allclose(smoothed(inputs), linear(inputs), atol=1e-4)
    assert torch.equal(linear.weight, original)  # the copy is smoothed, the source is not
    scaled = inputs * smoothed.inverse_scale
    spread = lambda x: float(x.abs().amax(dim=0).max() / x.abs().amax(dim=0).median())  # noqa: E731
    assert spread(scaled) < spread(inputs) / 3  # alpha 0.5: about the square root of the spread
    assert isinstance(smoothed, SmoothedLinear)


def test_a_linear_that_saw_no_input_is_named():
    with pytest.raises(ValueError, match="no calibration input reached linear 'dense'"):
        smoothed_copy(_Holder(), {}, 0.5)


class _Holder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(2, 2)


@pytest.fixture(scope="module")
def outlier_model():
    """A tiny pruning model whose LayerNorms give one channel a 30x larger range, like BERT's outlier dims."""
    torch.manual_seed(0)
    model = TokenPruningBertForSequenceClassification(
        configure_pruning(tiny_bert_config(num_labels=2), [1, 2], [0.6, 0.5])
    ).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight[5] *= 30.0
    return model


def test_smoothed_fp32_blocks_reproduce_the_model(outlier_model):
    blockwise = blockwise_class(outlier_model)(outlier_model.config)
    blockwise.load_state_dict(outlier_model.state_dict())
    blockwise.eval()
    calibration = [batch(seed) for seed in range(3)]
    blockwise.use_blocks(_smoothed_blocks(blockwise, _fp32_blocks(blockwise), calibration, alpha=0.5))
    inputs = batch(99)
    with torch.no_grad():
        reference, smoothed = outlier_model(**inputs), blockwise(**inputs)
    assert torch.equal(smoothed.token_counts, reference.token_counts)
    assert torch.allclose(smoothed.logits, reference.logits, atol=1e-4)


def test_int8_with_smoothing_stays_pruned_and_tracks_fp32(outlier_model):
    int8, _ = quantize_int8(outlier_model, [batch(seed) for seed in range(4)], smoothing_alpha=0.5)
    inputs = batch(99)
    with torch.no_grad():
        reference, quantized = outlier_model(**inputs), int8(**inputs)
    assert torch.equal(quantized.token_counts, reference.token_counts)
    assert (quantized.logits - reference.logits).abs().max() < 0.1 * reference.logits.abs().max()
