"""The dependencies' known-harmless noise is dropped on importing top, and real warnings from the same loggers stay."""

import logging
import subprocess
import sys

import pytest

import top  # noqa: F401

from .conftest import REPO_ROOT


@pytest.mark.parametrize(
    ("logger", "noise"),
    [
        ("torchao", "Failed to load /x/_C_cutlass_90a.abi3.so"),
        ("transformers.distributed.tensor_parallel", "The following layers were not sharded: classifier.weight"),
        ("neural_compressor", "Auto detect accelerator: CPU_Accelerator."),
        ("neural_compressor", "Converted the model in qdq mode, please compile it to accelerate inference."),
        ("neural_compressor", "hw aligned scales not supported for device INCAcceleratorType.CPU"),
        ("torch.export.pt2_archive._package", "Expect archive file to be a file ending in .pt2, or is a buffer."),
    ],
)
def test_known_noise_is_dropped_and_other_messages_pass(caplog, logger, noise):
    with caplog.at_level(logging.WARNING, logger=logger):
        logging.getLogger(logger).warning(noise)
        logging.getLogger(logger).warning("something the user must see")
    assert [record.getMessage() for record in caplog.records] == ["something the user must see"]


def test_inc_progress_stays_quiet_unless_its_loglevel_is_set(caplog, monkeypatch):
    monkeypatch.delenv("LOGLEVEL", raising=False)
    inc = logging.getLogger("neural_compressor")
    with caplog.at_level(logging.INFO, logger="neural_compressor"):
        inc.info("Preparation started.")
        inc.warning("something the user must see")
        monkeypatch.setenv("LOGLEVEL", "INFO")
        inc.info("Conversion end.")
    assert [record.getMessage() for record in caplog.records] == ["something the user must see", "Conversion end."]


def test_a_test_process_starts_without_the_dependencies_noise():
    """The suite's own imports (conftest pulls in transformers) come after top's filters: no torchao library
    failures or pytree deprecations in a worker's output."""
    started = subprocess.run(
        [sys.executable, "-c", "import tests.conftest"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert "Failed to load" not in started.stderr and "is an Enum subclass" not in started.stderr
