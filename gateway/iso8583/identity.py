"""The request id of an ISO 8583 message, derived so that a message and its repeats (a
0221 after its 0220, a 0421 after its 0420, a 0200 sent again) carry the same one and the
core's idempotency answers them alike.

It is a version-8 UUID (RFC 9562) from a SHA-256 of: the merchant the terminal's
certificate is bound to (terminal ids are unique only within a merchant), field 41
(terminal id), field 11 (STAN), the profile's time field (1987: field 7, transmission
date and time; 1993: field 12, local date and time) and the message
class (the type's first three digits: version, class, function; the fourth, whose 1
marks a repeat, is left out)."""
import hashlib
import uuid

DOMAIN = b"cardgate iso8583 request id v1"


def message_class(mti: str) -> str:
    return mti[:3]


def request_id(merchant_id: str, terminal_id: str, stan: str, transmission: str,
               mti: str) -> str:
    digest = hashlib.sha256(b"\0".join(
        [DOMAIN] + [part.encode("utf-8") for part in
                    (merchant_id, terminal_id, stan, transmission, message_class(mti))])).digest()
    value = bytearray(digest[:16])
    value[6] = (value[6] & 0x0F) | 0x80          # version 8: custom
    value[8] = (value[8] & 0x3F) | 0x80          # the RFC's variant
    return str(uuid.UUID(bytes=bytes(value)))
