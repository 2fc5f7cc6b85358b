"""Test configuration: deterministic hypothesis profile, single-threaded torch, shared fixtures."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Deterministic by default so that CI and a developer see the same examples; `HYPOTHESIS_PROFILE=dev`
# explores fresh random examples.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

try:  # torch is optional for the theory tests
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="session")
def executed_notebooks(tmp_path_factory):
    """(executed notebooks by name, folder of their copies for the docs build): each notebook runs once per session
    (see tests/notebook_run.py)."""
    from notebook_run import execute_all

    folder = tmp_path_factory.mktemp("executed_notebooks")
    return execute_all(folder), folder
