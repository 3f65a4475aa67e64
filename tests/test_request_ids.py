"""cardgate's own clients send time-ordered UUIDv7 request ids, which the gateway accepts."""
import time
import uuid

from cardgate.gateway import validation
from cardgate.gateway.request_ids import new_request_id, uuid7


def test_uuid7_has_version_variant_and_the_current_time():
    before_ms = time.time_ns() // 1_000_000
    value = uuid7()
    after_ms = time.time_ns() // 1_000_000
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert before_ms <= value.int >> 80 <= after_ms


def test_uuid7_sort_in_time_order_across_milliseconds():
    earlier = uuid7()
    time.sleep(0.002)
    later = uuid7()
    assert earlier.bytes < later.bytes


def test_new_request_ids_are_unique_and_valid():
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    for text in list(ids)[:100]:
        assert len(validation.request_id(text)) == 16
