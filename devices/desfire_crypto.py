"""The AES arithmetic of DESFire EV1 (for the host and the simulated card alike):
CBC with an explicit IV, CMAC whose chaining starts at the session IV (EV1 keeps one IV
running through a session: each command's and answer's CMAC becomes the next IV), the
session key of an AES authentication, and the CRC32 of enciphered data."""
import zlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
R_128 = 0x87


def aes_ecb(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def _double(block: bytes) -> bytes:
    """Multiplication by x in GF(2^128), as CMAC's subkeys are made."""
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value = (value & ((1 << 128) - 1)) ^ R_128
    return value.to_bytes(BLOCK, "big")


def cmac_subkeys(key: bytes) -> tuple[bytes, bytes]:
    k1 = _double(aes_ecb(key, bytes(BLOCK)))
    return k1, _double(k1)


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def cmac(key: bytes, data: bytes, iv: bytes = bytes(BLOCK), pad_to: int = 0) -> bytes:
    """AES-CMAC of data with its CBC chaining starting at iv (zero: RFC 4493). With
    pad_to, short data is padded to that many bytes (AN10922 pads to two blocks)."""
    k1, k2 = cmac_subkeys(key)
    length = max(pad_to, -(-len(data) // BLOCK) * BLOCK, BLOCK)
    if len(data) == length:
        padded, last_key = data, k1
    else:
        padded, last_key = data + b"\x80" + bytes(length - len(data) - 1), k2
    blocks = [padded[i:i + BLOCK] for i in range(0, length, BLOCK)]
    blocks[-1] = xor(blocks[-1], last_key)
    chained = iv
    for block in blocks:
        chained = aes_ecb(key, xor(chained, block))
    return chained


def rotate_left(data: bytes) -> bytes:
    return data[1:] + data[:1]


def session_key(rnd_a: bytes, rnd_b: bytes) -> bytes:
    """The AES session key of an EV1 authentication."""
    return rnd_a[0:4] + rnd_b[0:4] + rnd_a[12:16] + rnd_b[12:16]


def crc32(data: bytes) -> bytes:
    """DESFire's CRC32: the IEEE polynomial, initial value all ones, not inverted at the
    end; little-endian."""
    return (zlib.crc32(data) ^ 0xFFFFFFFF).to_bytes(4, "little")


def pad_zeros(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)
