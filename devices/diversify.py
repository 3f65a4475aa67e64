"""Card key diversification by NXP AN10922 (AES-128): each card's keys derive from a
master key, the card's UID, the application id and a system identifier, so that one
card's keys reveal nothing of another's.

    D = 0x01 || M, M = UID || AID || system id (1 to 31 bytes)
    the diversified key is the AES-CMAC of D under the master key, except that D is
    padded to 32 bytes (0x80 00..) when shorter, and then ends with subkey K2.
"""
from .desfire_crypto import BLOCK, cmac

DIVERSIFICATION_CONSTANT = b"\x01"


def diversify_aes128(master_key: bytes, uid: bytes, aid: bytes, system_id: bytes) -> bytes:
    """The card's AES-128 key (AN10922, section 2.2)."""
    if len(master_key) != BLOCK:
        raise ValueError("the master key must be 16 bytes (AES-128)")
    m = uid + aid + system_id
    if not 1 <= len(m) <= 31:
        raise ValueError(f"UID || AID || system id must be 1 to 31 bytes, got {len(m)}")
    return cmac(master_key, DIVERSIFICATION_CONSTANT + m, pad_to=2 * BLOCK)
