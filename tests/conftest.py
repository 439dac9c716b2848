"""Suite-wide settings.

Hypothesis's per-example deadline is a timing assertion, and timing is measured in
benchmarks/, never asserted in tests: on a loaded 2-core machine a pure-Python oracle
over a 70 kB buffer can take longer than any fixed deadline.
"""
from hypothesis import settings

settings.register_profile("fasttcp", deadline=None)
settings.load_profile("fasttcp")
