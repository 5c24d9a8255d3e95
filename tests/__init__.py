"""The test suite. ``top`` is imported here, before conftest imports torch and transformers, so that its filters of
the dependencies' import-time noise are in place in every test process first."""

import top  # noqa: F401
