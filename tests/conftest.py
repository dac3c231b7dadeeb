"""Shared test configuration: hypothesis profiles and a seeded generator.

Hypothesis runs derandomized in both profiles, so a failure reproduces on the
next run.  Pick a profile with HYPOTHESIS_PROFILE=dev|ci (default "dev").
Long statistical studies are marked ``slow`` and only run with QSKETCH_SLOW=1.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev",
    derandomize=True,
    deadline=None,
    max_examples=100,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=300,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

RUN_SLOW = os.environ.get("QSKETCH_SLOW") == "1"


def pytest_collection_modifyitems(config, items):
    if RUN_SLOW:
        return
    skip = pytest.mark.skip(reason="slow study: set QSKETCH_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    """A fixed-seed generator, fresh for every test."""
    return np.random.default_rng(12345)
