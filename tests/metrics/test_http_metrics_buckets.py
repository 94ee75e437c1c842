"""agent.metrics.http.bucket_index: the histogram bucket of a duration, ``le`` inclusive (compiled and pure)."""

from __future__ import annotations

import random
from bisect import bisect_left

from agent.metrics.http import DURATION_BUCKETS_S, bucket_index


def test_bucket_index_is_bisect_left_over_the_bounds() -> None:
    rng = random.Random(7)
    durations = [0.0, *DURATION_BUCKETS_S, 1e-9, 10.000001, 1e9] + [rng.uniform(0, 12) for _ in range(2000)]
    for duration in durations:
        assert bucket_index(duration) == bisect_left(DURATION_BUCKETS_S, duration), duration


def test_a_bound_belongs_to_its_own_bucket_and_beyond_the_last_is_inf() -> None:
    assert bucket_index(0.005) == 0 and bucket_index(0.0050001) == 1
    assert bucket_index(10.0) == len(DURATION_BUCKETS_S) - 1 and bucket_index(10.5) == len(DURATION_BUCKETS_S)
