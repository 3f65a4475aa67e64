"""Messages to and from bytes with pyiso8583, under a profile's spec (spec.py), and
checked beyond what the library checks: only the profile's fields, digits where digits
are due, hexadecimal where hex is due. A message that fails is a FormatError naming the
field; its content (a PAN among it) is never in the error."""
import string

import iso8583

from cardgate.gateway.iso8583.spec import PROFILES

_HEX = frozenset(string.hexdigits)


ECHOABLE = ("7", "11", "41")      # what an answer to an unreadable message may still echo


class FormatError(ValueError):
    """A message that cannot be read as the profile says: `field` is its number (or 't'
    the type, 'p' the bitmap, None for the framing); `mti` the type, if it was read;
    `echo` the fields that identify it (ECHOABLE) that were read, for the answer."""

    def __init__(self, why: str, field=None, mti=None, echo=None):
        super().__init__(why)
        self.field, self.mti, self.echo = field, mti, echo or {}


def decode(data: bytes, profile: str = "1987") -> dict:
    """{field number (str) or 't' / 'p' / '1': value (str)} of one message."""
    spec = PROFILES[profile]
    try:
        fields, _ = iso8583.decode(bytearray(data), spec)
    except iso8583.DecodeError as exc:
        # (exc.doc_dec holds what was read, the PAN maybe: never passed on)
        raise FormatError(f"field {exc.field}: {exc.msg}", exc.field, _mti_of(exc.doc_dec),
                          _echoable(exc.doc_dec)) from None
    except KeyError as exc:
        raise FormatError(f"the bitmap announces field {exc.args[0]}, which profile {profile} "
                          "does not use", exc.args[0], _mti_of_bytes(data)) from None
    mti = fields.get("t", "")
    if len(mti) != 4 or not mti.isdigit():
        raise FormatError("the message type must be 4 digits", "t")
    for number, value in fields.items():
        kind = spec[number].get("kind")
        if kind == "n" and not value.isdigit():
            raise FormatError(f"field {number} must be digits", number, mti, _echoable(fields))
        if kind == "b" and not _HEX.issuperset(value):
            raise FormatError(f"field {number} must be hexadecimal", number, mti,
                              _echoable(fields))
    return fields


def _echoable(decoded: dict) -> dict:
    return {n: decoded[n] for n in ECHOABLE
            if decoded and n in decoded and decoded[n].isascii() and decoded[n].isalnum()}


def encode(fields: dict, profile: str = "1987") -> bytes:
    """The message's bytes (pyiso8583 sets the bitmap from the fields present)."""
    data, _ = iso8583.encode(dict(fields), PROFILES[profile])
    return bytes(data)


def _mti_of(decoded: dict):
    mti = decoded.get("t") if decoded else None
    return mti if mti and mti.isdigit() and len(mti) == 4 else None


def _mti_of_bytes(data: bytes):
    head = bytes(data[:4])
    return head.decode("ascii") if head.isdigit() else None
