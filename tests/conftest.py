"""Hypothesis profiles: `ci` (used by `make test` and CI) is derandomized and bounded, so a run never fails by chance.

Explore locally with more examples: ``pytest --hypothesis-profile=explore``; keep any failure it finds as an
``@example`` on the test.
"""

import os

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, max_examples=30, print_blob=True, **_common)
settings.register_profile("dev", max_examples=30, **_common)
settings.register_profile("explore", max_examples=1000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
