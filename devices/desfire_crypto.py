"""The cryptography of DESFire EV1, for the host and the simulated card alike.

Keys come in four kinds. A DES key is a 2K3DES key whose two halves are equal (the
lowest bit of each byte, DES's parity bit, aside: DESFire keeps a DES key's version
there); 2K3DES and AES keys are 16 bytes, 3K3DES keys 24. A session key is DES (8
bytes), 2K3DES, 3K3DES or AES, made from the two random numbers of an authentication.

EV1's secure messaging after an ISO or AES authentication: CBC with an IV that runs
through the whole session (each command's and answer's CMAC, or the last block of an
enciphered command, becomes the next IV), CMAC (64-bit blocks for the DES kinds,
128-bit for AES), CRC32 inside enciphered data. After a legacy (D40) authentication:
no MAC on plain commands, enciphered data with a fresh zero IV each time, made by the
host with DES *decryption* chained on its output ("send mode"), CRC16 (ISO 14443-A)."""
import zlib

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16                       # AES's block
DES_BLOCK = 8
R_128, R_64 = 0x87, 0x1B
AES, DES, TDES2, TDES3 = "AES", "DES", "2K3DES", "3K3DES"
KEY_LENGTHS = {AES: 16, DES: 16, TDES2: 16, TDES3: 24}


def block_of(kind: str) -> int:
    return BLOCK if kind == AES else DES_BLOCK


def random_length(kind: str) -> int:
    """The length of an authentication's random numbers (RndA, RndB) with a key of this kind."""
    return 16 if kind in (AES, TDES3) else DES_BLOCK


def _algorithm(kind: str, key: bytes):
    if kind == AES:
        return algorithms.AES(key)
    # Always 24 bytes: single DES is K1 = K2 = K3, 2K3DES is K1 K2 K1.
    triple = key * 3 if len(key) == 8 else key + key[:8] if len(key) == 16 else key
    return TripleDES(triple)


def ecb_encrypt(key: bytes, block: bytes, kind: str = AES) -> bytes:
    return Cipher(_algorithm(kind, key), modes.ECB()).encryptor().update(block)


def ecb_decrypt(key: bytes, block: bytes, kind: str = AES) -> bytes:
    return Cipher(_algorithm(kind, key), modes.ECB()).decryptor().update(block)


def cbc_encrypt(key: bytes, iv: bytes, data: bytes, kind: str = AES) -> bytes:
    encryptor = Cipher(_algorithm(kind, key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def cbc_decrypt(key: bytes, iv: bytes, data: bytes, kind: str = AES) -> bytes:
    decryptor = Cipher(_algorithm(kind, key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def legacy_send(key: bytes, data: bytes) -> bytes:
    """The host's D40 encipherment: each block XORed with the previous output, then DES
    *decrypted*; the IV is zero."""
    out, previous = b"", bytes(DES_BLOCK)
    for i in range(0, len(data), DES_BLOCK):
        previous = ecb_decrypt(key, xor(data[i:i + DES_BLOCK], previous), DES)
        out += previous
    return out


def legacy_receive_sent(key: bytes, data: bytes) -> bytes:
    """The card's inverse of legacy_send."""
    out, previous = b"", bytes(DES_BLOCK)
    for i in range(0, len(data), DES_BLOCK):
        block = data[i:i + DES_BLOCK]
        out += xor(ecb_encrypt(key, block, DES), previous)
        previous = block
    return out


def _double(block: bytes) -> bytes:
    """Multiplication by x in GF(2^64) or GF(2^128), as CMAC's subkeys are made."""
    bits = len(block) * 8
    value = int.from_bytes(block, "big") << 1
    if value >> bits:
        value = (value & ((1 << bits) - 1)) ^ (R_128 if bits == 128 else R_64)
    return value.to_bytes(len(block), "big")


def cmac_subkeys(key: bytes, kind: str = AES) -> tuple[bytes, bytes]:
    k1 = _double(ecb_encrypt(key, bytes(block_of(kind)), kind))
    return k1, _double(k1)


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def cmac(key: bytes, data: bytes, iv: bytes = None, pad_to: int = 0, kind: str = AES) -> bytes:
    """CMAC of data with its CBC chaining starting at iv (zero: RFC 4493 for AES, SP
    800-38B for the DES kinds). With pad_to, short data is padded to that many bytes
    (AN10922 pads to two blocks)."""
    size = block_of(kind)
    k1, k2 = cmac_subkeys(key, kind)
    length = max(pad_to, -(-len(data) // size) * size, size)
    if len(data) == length:
        padded, last_key = data, k1
    else:
        padded, last_key = data + b"\x80" + bytes(length - len(data) - 1), k2
    padded = padded[:-size] + xor(padded[-size:], last_key)
    return cbc_encrypt(key, iv or bytes(size), padded, kind)[-size:]


def rotate_left(data: bytes) -> bytes:
    return data[1:] + data[:1]


def is_single_des(key: bytes) -> bool:
    """A 16-byte DES-kind key whose halves are equal but for the parity bits."""
    return len(key) == 16 and all((a ^ b) & 0xFE == 0 for a, b in zip(key[:8], key[8:]))


def des_kind(key: bytes) -> str:
    """DES, 2K3DES or 3K3DES, by the key itself."""
    return TDES3 if len(key) == 24 else DES if is_single_des(key) else TDES2


def session_key(rnd_a: bytes, rnd_b: bytes, kind: str = AES) -> bytes:
    """The session key of an authentication with a key of this kind."""
    if kind == AES:
        return rnd_a[0:4] + rnd_b[0:4] + rnd_a[12:16] + rnd_b[12:16]
    if kind == DES:
        return rnd_a[0:4] + rnd_b[0:4]
    if kind == TDES2:
        return rnd_a[0:4] + rnd_b[0:4] + rnd_a[4:8] + rnd_b[4:8]
    return rnd_a[0:4] + rnd_b[0:4] + rnd_a[6:10] + rnd_b[6:10] + rnd_a[12:16] + rnd_b[12:16]


def des_key_version(key: bytes) -> int:
    """A DES-kind key's version: the parity bits of its first 8 bytes, first byte highest."""
    return sum((key[n] & 1) << (7 - n) for n in range(8))


def with_des_version(key: bytes, version: int) -> bytes:
    """The key with its version in the parity bits (both halves of a DES key alike)."""
    out = bytearray(key)
    for n in range(8):
        out[n] = (out[n] & 0xFE) | ((version >> (7 - n)) & 1)
    if is_single_des(key):
        out[8:16] = out[0:8]
    return bytes(out)


def crc32(data: bytes) -> bytes:
    """DESFire's CRC32: the IEEE polynomial, initial value all ones, not inverted at the
    end; little-endian."""
    return (zlib.crc32(data) ^ 0xFFFFFFFF).to_bytes(4, "little")


def crc16(data: bytes) -> bytes:
    """ISO 14443-A's CRC_A (initial 0x6363, reflected polynomial 0x8408), little-endian."""
    crc = 0x6363
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


def pad_zeros(data: bytes, block: int = BLOCK) -> bytes:
    return data + bytes(-len(data) % block)
