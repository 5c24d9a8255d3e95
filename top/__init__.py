"""top: token pruning (ToP) and Flexible BERT for fast CPU inference of BERT-family encoders.

Importing the package filters, once, the known-harmless start-up noise of its dependencies: transformers imports
torchao, which logs "Failed to load" for CUDA kernels a CPU host never uses and deprecation notices about its own
enums, Intel Neural Compressor announces the accelerator it picked on every import, and the ONNX exporter notes
that torchvision (whose detection operators no BERT uses) is not installed. transformers checks a tensor-parallel
plan on every load and, for a model whose plan is empty (BERT's), names every layer as "not sharded". Inductor's
oneDNN lowering of INT8 linears warns about its own copy of the weights' zero points each time it compiles one.
Intel Neural Compressor logs a dozen progress lines at INFO for every block it quantizes, saves or loads (hundreds
per quantize stage): those stay quiet unless the user sets INC's own ``LOGLEVEL``, and so do its advice to compile
the INT8 model (the benchmark does), its note that a CPU has no hardware-aligned scales, and torch.export's note on
the archive names INC picks. Real warnings still show.
"""

import logging
import os
import warnings


class _DropMessages(logging.Filter):
    """Drop the records whose message starts with one of ``prefixes``; let every other record through."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


class _QuietProgress(logging.Filter):
    """Drop records under WARNING unless ``LOGLEVEL`` is set: INC's switch for its own verbosity, read per record
    so that a user who sets it sees INC's progress again."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "LOGLEVEL" in os.environ


logging.getLogger("torchao").addFilter(_DropMessages("Failed to load"))
logging.getLogger("torch.utils._pytree").addFilter(_DropMessages("<enum "))
logging.getLogger("neural_compressor").addFilter(
    _DropMessages("Auto detect accelerator", "Converted the model in qdq mode", "hw aligned scales not supported")
)
logging.getLogger("neural_compressor").addFilter(_QuietProgress())
logging.getLogger("torch.export.pt2_archive._package").addFilter(_DropMessages("Expect archive file"))
logging.getLogger("torch.onnx._internal.exporter._registration").addFilter(
    _DropMessages("torchvision is not installed")
)
logging.getLogger("transformers.distributed.tensor_parallel").addFilter(
    _DropMessages("The following layers were not sharded")
)
warnings.filterwarnings(
    "ignore", message="To copy construct from a tensor", category=UserWarning, module="torch._inductor.mkldnn_lowerings"
)
