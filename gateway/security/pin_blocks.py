"""PIN blocks from terminals (ISO 8583 field 52), under per-terminal PIN keys.

The keys live in one file of the data directory, keys/terminal-pin-keys.wrapped, wrapped
by the KEK (kek.py: on the PKCS#11 token when there is one) like every other key: a JSON
map of "merchant/terminal" to the key's kind and bytes. `cardgate keys terminal-pin-key`
makes or loads one; a running gateway sees the change at its next PIN block.

`verifier` is the whole boundary of a clear PIN: it deciphers the block (psec, the
payment-security library of pyiso8583's author) and returns only the card's keyed PIN
verifier (pan.PanIndexKey.pin_verifier), which the core compares with the card's. The
clear PIN never leaves the function; no error repeats it or the block.

  tdes  ISO 9564 format 0: 8-byte block, a double- or triple-length TDES key (16 or 24 bytes)
  aes   ISO 9564 format 4: 16-byte block, an AES key (16, 24 or 32 bytes)
"""
import base64
import json
import pathlib
import secrets

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from psec import des, pinblock

from cardgate.gateway.security import kek as kek_mod
from cardgate.gateway.store.files import WatchedFile, create_private

# kind -> block size, key sizes (the first: a key made here)
KINDS = {"tdes": (8, (16, 24)), "aes": (16, (16, 24, 32))}


class PinBlockError(ValueError):
    """A PIN block that cannot be taken: the wrong size for the terminal's key, or one
    that does not decipher to a PIN (another key, or not the format)."""


class NoPinKey(PinBlockError):
    """The terminal has no PIN key: it may not send PIN blocks."""


class PinKeyError(ValueError):
    """A terminal PIN key that cannot be kept: an unknown kind, or the wrong size."""


def _check_key(kind: str, key: bytes):
    if kind not in KINDS:
        raise PinKeyError(f"a terminal PIN key is tdes (ISO 9564 format 0) or aes (format "
                            f"4), not {kind!r}")
    if len(key) not in KINDS[kind][1]:
        raise PinKeyError(f"a {kind} PIN key has {' or '.join(map(str, KINDS[kind][1]))} "
                            f"bytes, not {len(key)}")


def _tdes_ecb(key: bytes, data: bytes, decrypt: bool) -> bytes:
    """TDES, ECB, a double-length key taken as the triple-length key K1 K2 K1 (what
    cryptography keeps supporting)."""
    cipher = Cipher(TripleDES(key + key[:8] if len(key) == 16 else key), modes.ECB())
    work = cipher.decryptor() if decrypt else cipher.encryptor()
    return work.update(data) + work.finalize()


def _pin(kind: str, key: bytes, block: bytes, pan: str) -> str:
    if kind == "tdes":
        return pinblock.decode_pinblock_iso_0(_tdes_ecb(key, block, True), pan)
    return pinblock.decipher_pinblock_iso_4(key, block, pan)


class TerminalPinKeys:
    """The data directory's terminal PIN keys, reread when the file changes."""

    def __init__(self, data_dir, kek):
        self.path = pathlib.Path(data_dir) / kek_mod.TERMINAL_PIN_KEYS.path
        self.kek = kek
        self._file = WatchedFile(self.path, self._parse, missing={})

    @classmethod
    def load_or_create(cls, data_dir, kek) -> "TerminalPinKeys":
        """The data directory's terminal PIN keys, made empty with a new store (so that
        every wrapped file exists from the start, and a KEK rotation rewraps it)."""
        keys = cls(data_dir, kek)
        create_private(keys.path, kek_mod.wrap(kek, b"{}", kek_mod.TERMINAL_PIN_KEYS.purpose))
        keys.names()                        # unwraps now: a wrong KEK is found at start
        return keys

    def _parse(self, data: bytes) -> dict:
        """{name: (kind, key bytes)}, decoded once per change of the file."""
        stored = json.loads(kek_mod.unwrap(self.kek, data, kek_mod.TERMINAL_PIN_KEYS.purpose,
                                           str(self.path)))
        return {name: (entry["kind"], base64.b64decode(entry["key"]))
                for name, entry in stored.items()}

    @staticmethod
    def name(merchant_id: str, terminal_id: str) -> str:
        return f"{merchant_id}/{terminal_id}"

    def verifier(self, merchant_id: str, terminal_id: str, block: bytes, pan: str,
                 card_key: bytes, pin_key) -> bytes:
        """The card's PIN verifier (pin_key.pin_verifier) of the PIN in `block`, which
        terminal_id of merchant_id enciphered for the card `pan`; PinBlockError if not."""
        entry = self._file.current().get(self.name(merchant_id, terminal_id))
        if entry is None:
            raise NoPinKey(f"terminal {terminal_id} of merchant {merchant_id} has no PIN key")
        kind, key = entry
        if len(block) != KINDS[kind][0]:
            raise PinBlockError(f"a {kind} PIN block has {KINDS[kind][0]} bytes, not {len(block)}")
        try:
            pin = _pin(kind, key, block, pan)
        except ValueError:
            raise PinBlockError("the PIN block does not decipher to a PIN under the "
                                "terminal's key") from None
        return pin_key.pin_verifier(card_key, pin)

    def put(self, merchant_id: str, terminal_id: str, kind: str, key: bytes = None) -> bytes:
        """Make (random) or load the terminal's PIN key, replacing the one it had; returns
        the key, for loading into the terminal (a key ceremony)."""
        if kind in KINDS and key is None:
            key = secrets.token_bytes(KINDS[kind][1][0])
        _check_key(kind, key)
        if kind == "tdes":
            key = des.adjust_key_parity(key)
        keys = {**self._file.current(), self.name(merchant_id, terminal_id): (kind, key)}
        stored = {name: {"kind": k, "key": base64.b64encode(value).decode()}
                  for name, (k, value) in keys.items()}
        kek_mod.write_wrapped(self.kek, self.path, json.dumps(stored, sort_keys=True).encode(),
                              kek_mod.TERMINAL_PIN_KEYS.purpose)
        return key

    def names(self) -> list:
        return sorted(self._file.current())


def check_value(kind: str, key: bytes) -> str:
    """The key check value a terminal shows for a loaded key: the first 3 bytes of zeros
    enciphered (TDES), or of the AES-CMAC of zeros (AES, as ANSI X9.24-1 has it)."""
    if kind == "tdes":
        return _tdes_ecb(key, bytes(8), False)[:3].hex().upper()
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(bytes(16))
    return mac.finalize()[:3].hex().upper()
