"""Shared fixtures. tests/ is a package: builders are imported as `tests.builders`.

Hypothesis's too_slow health check times input generation; on a machine shared with builds it
fails tests whose property holds, so it is off: no test here may depend on timing.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("kubectl-dra", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("kubectl-dra")
