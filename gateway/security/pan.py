"""Card numbers: Luhn check, masking (first 6 / last 4) and the keyed index key.

A full PAN never leaves this module in any form but its HMAC, which is how the
core finds a card; logs, errors and replies only ever see the masked form.
"""
import hashlib
import hmac
import re

PAN_LENGTH_MIN = 16
PAN_LENGTH_MAX = 19
INDEX_KEY_BYTES = 32
PIN_VERIFIER_BYTES = 16
CLIENT_PAN_DIGITS_MIN = 13      # card numbers a client may send in free text: 13 to 19
_DIGIT_RUN = re.compile(rf"[0-9]{{{CLIENT_PAN_DIGITS_MIN},}}")


class PanError(ValueError):
    """A card number is malformed; the message never repeats the number."""


def luhn_check_digit(payload: str) -> int:
    """Check digit that makes payload + digit pass the Luhn test."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = ord(ch) - 48
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def luhn_valid(pan: str) -> bool:
    return len(pan) > 1 and pan.isdigit() and luhn_check_digit(pan[:-1]) == int(pan[-1])


def check_pan(pan: str) -> str:
    if not pan.isascii() or not pan.isdigit():
        raise PanError("card number must contain digits only")
    if not PAN_LENGTH_MIN <= len(pan) <= PAN_LENGTH_MAX:
        raise PanError(f"card number must have {PAN_LENGTH_MIN} to {PAN_LENGTH_MAX} digits, "
                       f"got {len(pan)}")
    if not luhn_valid(pan):
        raise PanError(f"card number {mask(pan)} fails the Luhn check")
    return pan


def mask(pan: str) -> str:
    """'6277001234567890' -> '627700******7890'."""
    if len(pan) < 10:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def _masked_run(match) -> str:
    run = match.group()
    if len(run) > PAN_LENGTH_MAX or luhn_valid(run):  # longer: it may hold one
        return mask(run)
    return run


def mask_pans_in(text: str) -> str:
    """Text with every run of 13 to 19 digits that passes the Luhn check (a card number,
    whoever sent it) masked first 6 / last 4, and longer runs masked too: what errors and
    logs may carry of text a client sent."""
    return _DIGIT_RUN.sub(_masked_run, text) if text else text


def mask_parts(first6: int, last4: int, length: int) -> str:
    if not length:
        return ""
    return f"{first6:06d}" + "*" * (length - 10) + f"{last4:04d}"


def split_for_record(pan: str) -> tuple[int, int, int]:
    """(first6, last4, length): what a card record keeps to show the masked PAN."""
    return int(pan[:6]), int(pan[-4:]), len(pan)


class PanIndexKey:
    """The secret of a keyed hash, kept outside the database wrapped by the KEK
    (kek.WrappedSecret): the PAN index key, and the PIN verifier key."""

    def __init__(self, secret: bytes):
        if len(secret) != INDEX_KEY_BYTES:
            raise ValueError(f"PAN index key must be {INDEX_KEY_BYTES} bytes")
        self._secret = secret

    @classmethod
    def load_or_create(cls, secret_file) -> "PanIndexKey":
        """secret_file: a kek.WrappedSecret."""
        return cls(secret_file.load_or_create(INDEX_KEY_BYTES))

    def card_key(self, pan: str) -> bytes:
        """32-byte HMAC-SHA256 of the PAN: the core's lookup key for the card."""
        return hmac.new(self._secret, pan.encode("ascii"), hashlib.sha256).digest()

    def pin_verifier(self, card_key: bytes, pin: str) -> bytes:
        """16-byte HMAC-SHA256 of (card, PIN): comparable, not reversible without this key.
        Bound to the card, so equal PINs of two cards give unrelated verifiers."""
        return hmac.new(self._secret, card_key + b"|" + pin.encode("ascii"),
                        hashlib.sha256).digest()[:PIN_VERIFIER_BYTES]
