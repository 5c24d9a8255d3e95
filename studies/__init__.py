"""One-off measurements that decided a design choice, the tool that records a finished run, and the results report.

``top`` is imported here, before any study module imports torch or transformers, so that its filters of the
dependencies' import-time noise are in place first (a stage gets the same through ``pipeline``).
"""

import top  # noqa: F401
