"""Prefect orchestration over the DVC stages: the `top/compress` and `top-sweep/sweep` deployments, served locally."""
