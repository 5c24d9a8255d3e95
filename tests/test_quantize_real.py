"""INT8 on the real backbone and real MRPC text: predictions agree with FP32 on at least 98% of a dev subset."""

import pytest
import torch
from sklearn.linear_model import LogisticRegression

from top.backbone import load_tokenizer, resolve_backbone
from top.data.batches import batch_loader, model_inputs
from top.data.prepare import load_prepared, prepare_task
from top.evaluate import evaluate, prediction_agreement
from top.params import parse_params
from top.pruning.model import TokenPruningBertForSequenceClassification
from top.quantize import quantize_int8

from .conftest import DEFAULT_BACKBONE


def fit_head(model, split, tokenizer) -> None:
    """A trained classifier in seconds: logistic regression on the frozen encoder's pooled output.

    A random head would put most examples near the decision boundary, where any rounding flips predictions.
    """
    features, labels = [], []
    with torch.no_grad():
        for batch in batch_loader(split, tokenizer, 32, False, 0):
            features.append(model.bert(**model_inputs(batch)).pooler_output)
            labels.append(batch["labels"])
    head = LogisticRegression(max_iter=1000).fit(torch.cat(features).numpy(), torch.cat(labels).numpy())
    with torch.no_grad():
        weight = torch.tensor(head.coef_, dtype=torch.float32)
        model.classifier.weight.copy_(torch.cat([-weight, weight]) / 2)
        model.classifier.bias.copy_(torch.tensor([-head.intercept_[0], head.intercept_[0]], dtype=torch.float32) / 2)


@pytest.mark.slow
def test_int8_agrees_with_fp32_on_real_mrpc(shared_data_dir, params_dict, tmp_path):
    params_dict["data"].update(data_dir=str(shared_data_dir), max_train_samples=64, max_eval_samples=96, max_length=128)
    params = parse_params(params_dict)
    prepare_task(params.data, DEFAULT_BACKBONE, tmp_path / "prepared")
    _, splits, _ = load_prepared(tmp_path / "prepared")
    fp32 = TokenPruningBertForSequenceClassification.from_pretrained(resolve_backbone(DEFAULT_BACKBONE), num_labels=2)
    fp32.eval()
    tokenizer = load_tokenizer(DEFAULT_BACKBONE)
    fit_head(fp32, splits["train"], tokenizer)
    calibration = [model_inputs(batch) for batch in batch_loader(splits["train"], tokenizer, 16, True, 0)][:4]
    int8, _ = quantize_int8(fp32, calibration)
    spec, dev = load_prepared(tmp_path / "prepared")[0], splits["eval"]
    evaluations = [evaluate(model, spec, dev, tokenizer, 32, 128) for model in (fp32, int8)]
    assert prediction_agreement(*evaluations) >= 0.98
