"""Shared test settings: Hypothesis profiles (more examples on CI, no deadline on noisy machines)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=150, deadline=None)
settings.register_profile(
    "ci", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
# For a long hunt before a release: pytest --hypothesis-profile=thorough tests/test_fast_path.py
settings.register_profile(
    "thorough", max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
