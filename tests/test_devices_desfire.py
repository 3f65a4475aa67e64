"""DESFire native commands, ISO 7816-4 wrapped: framing, chaining of additional frames
and every status word turned into a named error."""
import pytest

from cardgate.devices.desfire import STATUS_NAMES, Desfire, DesfireError, unwrap, wrap


class Card:
    """Answers scripted per APDU, recording what it was sent."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.sent = []

    def __call__(self, apdu):
        self.sent.append(apdu)
        return self.answers.pop(0)


def test_commands_are_iso_wrapped():
    assert wrap(0x60) == bytes.fromhex("9060000000")
    assert wrap(0x5A, b"\x01\x02\x03") == bytes.fromhex("905A00000301020300")
    card = Card(bytes.fromhex("9100"))
    Desfire(card).write_data(1, 0, b"\xAA\xBB")
    assert card.sent == [bytes.fromhex("903D00000901000000020000AABB00")]


def test_additional_frames_are_collected():
    card = Card(b"\x04\x01\x01" + b"\x91\xAF", b"\x04\x01\x02" + b"\x91\xAF", b"\x77" * 14 + b"\x91\x00")
    assert Desfire(card).get_version() == b"\x04\x01\x01\x04\x01\x02" + b"\x77" * 14
    assert card.sent[1:] == [bytes.fromhex("90AF000000")] * 2


@pytest.mark.parametrize("status", sorted(set(STATUS_NAMES) - {0x00, 0xAF}))
def test_every_error_status_is_raised_by_name(status):
    with pytest.raises(DesfireError) as caught:
        Desfire(Card(bytes([0x91, status]))).select_application(b"\x01\x02\x03")
    assert caught.value.status == status
    assert STATUS_NAMES[status] in str(caught.value) and "SelectApplication" in str(caught.value)


def test_an_unknown_status_and_a_non_desfire_answer():
    with pytest.raises(DesfireError, match="UNKNOWN_55"):
        Desfire(Card(b"\x91\x55")).commit_transaction()
    with pytest.raises(DesfireError, match="status word 6A82"):
        unwrap(b"\x6A\x82")
    with pytest.raises(DesfireError, match="none"):
        unwrap(b"")


def test_value_file_commands():
    card = Card(b"\x91\x00", b"\x10\x27\x00\x00\x91\x00", b"\x91\x00")
    desfire = Desfire(card)
    desfire.credit(2, 500)
    assert desfire.get_value(2) == 10_000
    desfire.commit_transaction()
    assert card.sent == [bytes.fromhex("900C00000502F401000000"), bytes.fromhex("906C0000010200"),
                         bytes.fromhex("90C7000000")]
