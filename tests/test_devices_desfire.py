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


def test_cmac_rfc4493_vectors():
    from cardgate.devices.desfire_crypto import cmac

    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    message = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                            "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
    assert cmac(key, b"").hex() == "bb1d6929e95937287fa37d129b756746"
    assert cmac(key, message[:16]).hex() == "070a16b46b4d4144f79bdd9dd04a287c"
    assert cmac(key, message[:40]).hex() == "dfa66747de9ae63030ca32611497c827"
    assert cmac(key, message).hex() == "51f0bebf7e3b9d92fc49741779363cfe"


def test_desfire_crc32_is_zlibs_without_the_final_inversion():
    from cardgate.devices.desfire_crypto import crc32

    assert crc32(b"123456789") == (0x340BC6D9).to_bytes(4, "little")    # CRC-32/JAMCRC check value
