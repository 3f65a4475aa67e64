"""The ISO 8583 message layer, checked against messages built byte by byte from
docs/iso8583.md (not through the codec): decode and encode, every kind of bad input
refused naming the field and never echoing the card number, the framing, the request ids
of repeats, and a response code for every cardgate result, as the docs list them."""
import asyncio
import pathlib
import re

import pytest

from cardgate.fastcore.records import Result
from cardgate.gateway.iso8583 import codec, framing, identity, response_codes, spec

DOCS = pathlib.Path(__file__).parent.parent / "docs" / "iso8583.md"
PAN = "6277001234567890"


def bitmap(*fields: int) -> str:
    """The primary bitmap (and the secondary, past field 64) as the docs say: 16 hex
    characters each, bit 1 of the first saying a second one follows."""
    bits = set(fields) | ({1} if max(fields) > 64 else set())
    size = 128 if 1 in bits else 64
    value = sum(1 << (size - n) for n in bits)
    return f"{value:0{size // 4}X}"


def purchase_bytes(amount="000000001250", pan=PAN) -> bytes:
    """A 0200 purchase, field by field, in the docs' format."""
    return ("0200" + bitmap(2, 3, 4, 7, 11, 41, 42, 49)
            + f"{len(pan):02d}" + pan        # 2: n ..19, LL
            + "000000"                       # 3: processing code, purchase
            + amount                         # 4: n 12, minor units
            + "1207163000"                   # 7: MMDDhhmmss
            + "004711"                       # 11: STAN
            + "TERM0001"                     # 41: ans 8
            + "MERCHANT1      "              # 42: ans 15
            + "978").encode("ascii")         # 49: EUR


def test_a_message_built_from_the_docs_decodes_and_encodes_back_to_its_bytes():
    data = purchase_bytes()
    fields = codec.decode(data)
    assert fields["t"] == "0200" and fields["2"] == PAN and fields["4"] == "000000001250"
    assert fields["41"] == "TERM0001" and fields["49"] == "978"
    assert codec.encode(fields) == data


def test_a_secondary_bitmap_carries_fields_past_64():
    data = ("0800" + bitmap(7, 11, 70) + "1207163000" + "000001" + "301").encode("ascii")
    fields = codec.decode(data)
    assert fields["70"] == "301" and fields["1"]
    assert codec.encode(fields) == data


@pytest.mark.parametrize("data, field, why", [
    (purchase_bytes(amount="00000000125A"), "4", "must be digits"),
    (purchase_bytes(pan="62770012345678A0"), "2", "must be digits"),
    (("0200" + bitmap(2, 5) + "16" + PAN + "000000001250").encode(), "5",
     "does not use"),
    (purchase_bytes()[:-2], "49", ""),
    (purchase_bytes() + b"00", None, "Extra data"),
    (b"02A0" + purchase_bytes()[4:], "t", "4 digits"),
    (b"0200" + b"Z" * 16 + purchase_bytes()[20:], "p", ""),
])
def test_bad_messages_are_refused_naming_the_field_and_never_the_card(data, field, why):
    with pytest.raises(codec.FormatError) as refused:
        codec.decode(data)
    assert field is None or refused.value.field == field, (refused.value.field, refused.value)
    assert why in str(refused.value)
    assert "6277001234" not in str(refused.value) and "1234567890" not in str(refused.value)


def read_all(data: bytes):
    async def read():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        found = []
        while (message := await framing.read_message(reader)) is not None:
            found.append(message)
        return found
    return asyncio.run(read())


def test_messages_follow_their_two_byte_length():
    one, two = purchase_bytes(), b"0800" + b"x"
    assert read_all(framing.frame(one) + framing.frame(two)) == [one, two]
    assert framing.frame(one)[:2] == len(one).to_bytes(2, "big")


@pytest.mark.parametrize("data, why", [
    (b"\x00\x00", "length prefix of 0"),
    (b"\xff\xff" + b"x" * 10, "length prefix of 65535"),
    (b"\x00\x10" + b"x" * 5, "after 5 of the 16 bytes"),
    (b"\x00", "inside a length prefix"),
])
def test_a_broken_frame_is_refused(data, why):
    with pytest.raises(codec.FormatError, match=why):
        read_all(data)
    with pytest.raises(ValueError):
        framing.frame(b"x" * (framing.MESSAGE_BYTES_MAX + 1))


def test_a_repeat_carries_its_originals_request_id_and_nothing_else_does():
    first = identity.request_id("m1", "TERM0001", "004711", "1207163000", "0220")
    assert identity.request_id("m1", "TERM0001", "004711", "1207163000", "0221") == first
    others = {identity.request_id(*args) for args in (
        ("m2", "TERM0001", "004711", "1207163000", "0220"),      # another merchant
        ("m1", "TERM0002", "004711", "1207163000", "0220"),      # another terminal
        ("m1", "TERM0001", "004712", "1207163000", "0220"),      # another STAN
        ("m1", "TERM0001", "004711", "1207163001", "0220"),      # another time
        ("m1", "TERM0001", "004711", "1207163000", "0200"))}     # another class
    assert len(others) == 5 and first not in others
    assert first[14] == "8"                                      # a version-8 UUID


def test_every_result_has_a_response_code_and_the_docs_list_them_all():
    rows = re.findall(r"^\| `(\w+)` \| (\S+) \| (\S+) \|$", DOCS.read_text(), re.M)
    listed = {name: (code_1987, code_1993) for name, code_1987, code_1993 in rows}
    assert {result.name for result in Result} == set(listed)
    assert sum(len(results) for results in response_codes._CODES.values()) == len(Result)
    for name, code_1987, code_1993 in response_codes.table():
        assert listed[name] == (code_1987, code_1993), name
        assert re.fullmatch(r"[0-9]{2}", code_1987) and re.fullmatch(r"[0-9]{3}", code_1993)
    assert response_codes.response_code(Result.APPROVED) == "00"
    assert response_codes.response_code(Result.DECLINED_INSUFFICIENT_FUNDS, "1993") == "116"


@pytest.mark.parametrize("profile, fields", [("1987", spec.FIELDS_1987),
                                             ("1993", spec.FIELDS_1993)])
def test_the_docs_field_tables_are_the_codecs_specifications(profile, fields):
    section = DOCS.read_text().split(f"## Profile {profile}")[1].split("\n## ")[0]
    rows = re.findall(r"^\| (\d+) \| (\w+) (?:\.\.)?(\d+)(?: \((LL|LLL)\))? \| ", section, re.M)
    documented = {number: (kind, int(length), {"": 0, "LL": 2, "LLL": 3}[prefix])
                  for number, kind, length, prefix in rows}
    assert documented == {number: (kind, length, variable) for number, (kind, length, variable, _)
                          in fields.items()}
