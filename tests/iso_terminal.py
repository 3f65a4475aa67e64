"""A terminal's side of the ISO 8583 interface, written from docs/iso8583.md alone (never
through gateway/iso8583): messages built and answers read byte by byte with the formats
the docs' field tables give, PIN blocks made as ISO 9564 describes them, over TLS."""
import os
import pathlib
import re
import socket
import ssl

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "iso8583.md"


def field_formats(profile: str = "1987") -> dict:
    """Field number -> (length, prefix digits) from the docs' field table of `profile`:
    "n 6" is 6 characters fixed, "ans ..37 (LL)" up to 37 after a 2-digit length."""
    text = DOCS.read_text()
    section = text.split(f"## Profile {profile}", 1)[1].split("\n## ", 1)[0]
    formats = {}
    for number, kind, dots, length, prefix in re.findall(
            r"^\| (\d+) \| (\w+) (\.\.)?(\d+)(?: \((L+)\))? \|", section, re.M):
        formats[number] = (int(length), len(prefix))
    if profile == "1993":        # the 1993 table lists what differs; the rest is 1987's
        formats = {**field_formats("1987"), **formats}
    return formats


def build(mti: str, fields: dict, profile: str = "1987") -> bytes:
    """A message of the profile's ASCII format from its fields' text values."""
    formats = field_formats(profile)
    bits = {int(n) for n in fields}
    size = 128 if max(bits) > 64 else 64
    if size == 128:
        bits.add(1)
    out = mti + f"{sum(1 << (size - n) for n in bits):0{size // 4}X}"
    for number in sorted(fields, key=int):
        length, prefix = formats[number]
        value = fields[number]
        assert len(value) == length or prefix, (number, value)
        out += (f"{len(value):0{prefix}d}" if prefix else "") + value
    return out.encode("ascii")


def parse(data: bytes, profile: str = "1987") -> dict:
    """The fields of a message (with "t" its type), read as the docs describe them."""
    formats = field_formats(profile)
    text = data.decode("ascii")
    fields, at = {"t": text[:4]}, 4
    bitmap = int(text[at:at + 16], 16)
    at += 16
    size = 64
    if bitmap >> 63:
        bitmap = bitmap << 64 | int(text[at:at + 16], 16)
        at += 16
        size = 128
    for n in range(2, size + 1):
        if not bitmap >> (size - n) & 1:
            continue
        length, prefix = formats[str(n)]
        if prefix:
            length = int(text[at:at + prefix])
            at += prefix
        fields[str(n)] = text[at:at + length]
        at += length
    assert at == len(text), f"{len(text) - at} bytes after the last field"
    return fields


def exchange(address, certs: pathlib.Path, name: str, frames: list,
             profile: str = "1987") -> dict:
    """Send the frames at once on one TLS connection with certificate `name`; the
    answers by STAN."""
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    context.load_cert_chain(str(certs / f"{name}.crt"), str(certs / f"{name}.key"))
    with socket.create_connection(address) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"".join(len(f).to_bytes(2, "big") + f for f in frames))
        stream = tls.makefile("rb")
        answers = {}
        for _ in frames:
            size = int.from_bytes(stream.read(2), "big")
            answer = parse(stream.read(size), profile)
            answers[answer["11"]] = answer
        return answers


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def _ecb(algorithm, data: bytes) -> bytes:
    encryptor = Cipher(algorithm, modes.ECB()).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def pin_block_format_0(key: bytes, pin: str, pan: str) -> str:
    """ISO 9564-1 format 0 under a TDES key: the PIN field (0, length, PIN, F padding)
    XOR the PAN field (0000 and the 12 rightmost PAN digits less the check digit)."""
    pin_field = bytes.fromhex(f"0{len(pin):X}{pin}".ljust(16, "F"))
    pan_field = bytes.fromhex("0000" + pan[-13:-1])
    triple = key + key[:8] if len(key) == 16 else key       # K1 K2 K1
    return _ecb(TripleDES(triple), _xor(pin_field, pan_field)).hex().upper()


def pin_block_format_4(key: bytes, pin: str, pan: str) -> str:
    """ISO 9564-1 format 4 under an AES key: the PIN field (4, length, PIN, A fill to 16
    nibbles, 8 random bytes) enciphered, XOR the PAN field (PAN length less 12, the PAN,
    0 padding to 32 nibbles), enciphered again."""
    pin_field = bytes.fromhex(f"4{len(pin):X}{pin}".ljust(16, "A")) + os.urandom(8)
    pan_field = bytes.fromhex(f"{len(pan) - 12:X}{pan}".ljust(32, "0"))
    first = _ecb(algorithms.AES(key), pin_field)
    return _ecb(algorithms.AES(key), _xor(first, pan_field)).hex().upper()
