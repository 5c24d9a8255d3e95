"""INT8 on the real backbone and real MRPC text: predictions agree with FP32 on at least 98% of a dev subset."""

import pytest

from top.backbone import load_tokenizer, resolve_backbone
from top.data.batches import batch_loader, model_inputs
from top.data.prepare import load_prepared, prepare_task
from top.evaluate import evaluate, prediction_agreement
from top.params import parse_params
from top.pruning.model import TokenPruningBertForSequenceClassification
from top.quantize import quantize_int8

from .conftest import DEFAULT_BACKBONE, fit_classifier_head


@pytest.mark.slow
def test_int8_agrees_with_fp32_on_real_mrpc(shared_data_dir, params_dict, tmp_path):
    params_dict["data"].update(data_dir=str(shared_data_dir), max_train_samples=64, max_eval_samples=96, max_length=128)
    params = parse_params(params_dict)
    prepare_task(params.data, DEFAULT_BACKBONE, tmp_path / "prepared")
    _, splits, _ = load_prepared(tmp_path / "prepared")
    fp32 = TokenPruningBertForSequenceClassification.from_pretrained(resolve_backbone(DEFAULT_BACKBONE), num_labels=2)
    fp32.eval()
    tokenizer = load_tokenizer(DEFAULT_BACKBONE)
    fit_classifier_head(fp32, splits["train"], tokenizer)
    calibration = [model_inputs(batch) for batch in batch_loader(splits["train"], tokenizer, 16, True, 0)][:4]
    int8, _ = quantize_int8(fp32, calibration)
    spec, dev = load_prepared(tmp_path / "prepared")[0], splits["eval"]
    evaluations = [evaluate(model, spec, dev, tokenizer, 32, 128) for model in (fp32, int8)]
    assert prediction_agreement(*(evaluation.predictions for evaluation in evaluations)) >= 0.98
