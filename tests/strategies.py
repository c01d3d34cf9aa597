"""Shared hypothesis settings and strategies for the generated-input tests."""

import json

from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

# Bounded and derandomized (a fixed sequence of examples, no example database): a run costs
# seconds, and a failure reproduces on every machine.
PROPERTY = hypothesis_settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    # One database transaction and one project for all examples of a test: each example starts by
    # clearing what the previous one stored, or checks what it did against what was there.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)  # past 64 bits too
    | st.floats()  # NaN and infinities serialize as bare tokens: not JSON
    | st.text(max_size=60)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=16,
)


def as_json(value) -> bytes:
    """`value` as a client might send it: big integers and NaN written out, UTF-8 as is."""
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
