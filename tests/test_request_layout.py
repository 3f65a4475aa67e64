"""The request record names what it holds: where operations use the same bytes for
different things, each use has its own name, packs to the same bytes as before (so a
store keeps its format), reads back by that name, and two names of one place are refused.
"""
import pytest

from cardgate.fastcore import records
from cardgate.fastcore.records import Op

REQUEST_ID = bytes(range(16))

# (operation, the name it uses, the general name of the same bytes, a value)
SHARED = [
    (Op.CREATE_RANGE, "numbering", "target_status", 2),
    (Op.DEACTIVATE, "close_disposition", "target_status", 1),
    (Op.DEFINE_PRODUCT, "product_kind", "target_status", records.PRODUCT_KIND_OTHER),
    (Op.SET_STAGE, "stage", "target_status", records.CardStage.SHIPPED),
    (Op.LOYALTY_SALE, "payment_method", "target_status", records.PaymentMethod.BANK_CARD),
    (Op.CREATE_RANGE, "balance_max_minor", "amount_minor", 500_00),
    (Op.ALLOCATE_SERIALS, "serial_count", "amount_minor", 250),
    (Op.SET_CONTRACT, "credit_limit_minor", "amount_minor", 10_000_00),
    (Op.DEFINE_PRODUCT, "product_code", "range_id", 19),
    (Op.DEFINE_PRODUCT, "product_name", "range_name", "diesel"),
    (Op.DEFINE_PARTNER, "partner_name", "range_name", "Cafe"),
    (Op.SET_RULES, "program_id", "profile_id", 7),
    (Op.DEFINE_PARTNER, "partner_id", "profile_id", 3),
    (Op.SET_MEMBER, "birthday_mmdd", "profile_id", 1231),
    (Op.LOYALTY_SALE, "points_tendered", "load_per_day_max_minor", 120),
]


@pytest.mark.parametrize("op, name, general, value", SHARED, ids=[s[1] for s in SHARED])
def test_each_use_of_shared_bytes_has_its_name(op, name, general, value):
    packed = records.pack_request(op, REQUEST_ID, **{name: value})
    assert packed == records.pack_request(op, REQUEST_ID, **{general: value}), \
        f"{name} is not stored where {general} always was: the store format would change"
    view = records.unpack_request(packed)
    expected = value.encode() if isinstance(value, str) else value
    assert getattr(view, name) == expected


@pytest.mark.parametrize("op, name, general, value", SHARED, ids=[s[1] for s in SHARED])
def test_two_names_of_the_same_bytes_are_refused(op, name, general, value):
    with pytest.raises(ValueError, match=f"{general} and {name}|{name} and {general}"):
        records.pack_request(op, REQUEST_ID, **{name: value, general: value})


def test_a_payload_digest_goes_where_its_operation_reads_it():
    card_key, other_card = b"\x01" * 32, b"\x02" * 32
    moved = records.unpack_request(records.pack_request(
        Op.REPLACE_CARD, REQUEST_ID, card_key=card_key, payload=other_card))
    assert moved.card_key == card_key                  # the card it names stays named
    assert moved.card_payload_digest != bytes(16)
    configured = records.unpack_request(records.pack_request(
        Op.SET_PROFILE, REQUEST_ID, profile_id=1, payload=records.pack_profile(1)))
    assert configured.payload_digest != bytes(32)
    assert configured.card_payload_digest == bytes(16)
