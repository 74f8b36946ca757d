"""Adjusted counts from the OpenTelemetry tracestate threshold (``ot=th:<hex>``)."""

from __future__ import annotations

import pytest

from relay.genai.sampling import adjusted_count

MAX = 1 << 56


@pytest.mark.parametrize("trace_state, expected", [
    ("ot=th:0", 1.0),                                  # p = 1
    ("ot=th:8", 2.0),                                  # T = 2^55: p = 1/2
    ("ot=th:c", 4.0),                                  # T = 3 * 2^54: p = 1/4
    ("ot=th:e6666666666668", MAX / (MAX - 0xe6666666666668)),  # p = 0.1, as rounded to 56 bits
    ("ot=th:ffffffffffffff", float(MAX)),              # the smallest probability there is
    ("vendor=abc, ot=rv:1a2b3c4d5e6f70;th:8", 2.0),    # another member first, rv before th
    ("ot=rv:1a2b3c4d5e6f70", 1.0),                     # randomness but no threshold
    ("th:8", 1.0),                                     # not inside the ot member
    ("other=th:8", 1.0),
    ("ot=th:", 1.0), ("ot=th:123456789abcdef", 1.0),   # no digits; more than 14
    ("ot=th:G", 1.0), ("ot=th:8A", 1.0),               # not lower-case hex
    ("", 1.0), (None, 1.0),
])
def test_adjusted_count(trace_state, expected):
    assert adjusted_count(trace_state) == expected


def test_trailing_zeros_are_implied():
    assert adjusted_count("ot=th:8") == adjusted_count("ot=th:80000000000000") == 2.0
