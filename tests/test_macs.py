"""The analytic MACs model against torch's FLOP counter on the dense Hugging Face model."""

import pytest
import torch
from transformers import BertForSequenceClassification

from top.pruning.macs import EncoderDims, attention_macs, classifier_head_macs, dense_encoder_macs, encoder_macs

from .conftest import flop_counter, tiny_bert_config


@pytest.fixture(scope="module")
def tiny_config():
    return tiny_bert_config(num_hidden_layers=3, intermediate_size=80)


def measured_macs(model, batch: int, tokens: int) -> float:
    inputs = torch.randint(0, 100, (batch, tokens))
    with flop_counter() as counter, torch.no_grad():
        model(input_ids=inputs)
    return counter.get_total_flops() / 2


@pytest.mark.parametrize(("batch", "tokens"), [(1, 7), (2, 16), (3, 33)])
def test_dense_model_macs_match_the_flop_counter(tiny_config, batch, tokens):
    model = BertForSequenceClassification(tiny_config).eval()
    dims = EncoderDims.from_config(tiny_config)
    analytic = batch * (dense_encoder_macs(dims, tokens) + classifier_head_macs(dims, tiny_config.num_labels))
    assert measured_macs(model, batch, tokens) == analytic


def test_shrinking_lengths_follow_tops_placement(tiny_config):
    dims = EncoderDims.from_config(tiny_config)
    lengths = [20, 20, 10, 5]
    expected = sum(attention_macs(dims, lengths[i]) + 2 * lengths[i + 1] * 48 * 80 for i in range(3))
    assert encoder_macs(dims, lengths) == expected
    assert encoder_macs(dims, lengths) < dense_encoder_macs(dims, 20)
    with pytest.raises(ValueError, match="need 4 lengths"):
        encoder_macs(dims, [20, 10])
