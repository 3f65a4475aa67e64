"""Card key diversification by NXP AN10922 (AES-128): each card's keys derive from a
master key, the card's UID, the application id and a system identifier, so that one
card's keys reveal nothing of another's.

    D = 0x01 || M, M = UID || AID || system id (1 to 31 bytes)
    D is padded to 32 bytes with 0x80 00.. when shorter; the last block is then XORed
    with CMAC subkey K2, else with K1; the diversified key is the CBC-MAC (zero IV) of
    the two blocks under the master key.
"""
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
DIVERSIFICATION_CONSTANT = b"\x01"
R_128 = 0x87


def _aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _double(block: bytes) -> bytes:
    """Multiplication by x in GF(2^128), as CMAC's subkeys are made."""
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value = (value & ((1 << 128) - 1)) ^ R_128
    return value.to_bytes(BLOCK, "big")


def cmac_subkeys(key: bytes) -> tuple[bytes, bytes]:
    k1 = _double(_aes_block(key, bytes(BLOCK)))
    return k1, _double(k1)


def diversify_aes128(master_key: bytes, uid: bytes, aid: bytes, system_id: bytes) -> bytes:
    """The card's AES-128 key (AN10922, section 2.2)."""
    if len(master_key) != BLOCK:
        raise ValueError("the master key must be 16 bytes (AES-128)")
    m = uid + aid + system_id
    if not 1 <= len(m) <= 31:
        raise ValueError(f"UID || AID || system id must be 1 to 31 bytes, got {len(m)}")
    d = DIVERSIFICATION_CONSTANT + m
    k1, k2 = cmac_subkeys(master_key)
    if len(d) < 2 * BLOCK:
        d, last_key = d + b"\x80" + bytes(2 * BLOCK - len(d) - 1), k2
    else:
        last_key = k1
    first, last = d[:BLOCK], bytes(a ^ b for a, b in zip(d[BLOCK:], last_key))
    chained = _aes_block(master_key, first)
    return _aes_block(master_key, bytes(a ^ b for a, b in zip(last, chained)))
