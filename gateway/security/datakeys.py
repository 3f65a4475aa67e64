"""Data keys for card numbers at rest: AES-256-GCM under a key ring with key ids.

The ring is a JSON document in the data directory's keys/ folder, outside the database,
kept only wrapped by the key-encryption key (kek.py), which is not in the data directory.
New PANs are encrypted under the active key; `cardgate keys rotate` adds a
key, makes it active and re-encrypts every stored PAN under it, in small transactions
while the gateway keeps answering, and picks up where it stopped when run again.
Each record is bound to its card id and what it holds (GCM associated data: the card id,
then nothing for a PAN or b"holder" for a holder name), so records cannot be swapped.
"""
import base64
import json
import pathlib
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardgate.gateway.security import kek as kek_mod
from cardgate.gateway.store.files import WatchedFile, create_private

RECORD_VERSION = 1
NONCE_BYTES = 12
KEY_BYTES = 32
KEY_ID_BYTES_MAX = 32
PAN, HOLDER = b"", b"holder"             # what a record holds (its purpose)
RING_PURPOSE = kek_mod.DATA_KEY_RING.purpose


class KeyError_(LookupError):
    pass


def _ring_bytes(ring: dict) -> bytes:
    return json.dumps(ring, indent=1).encode()


def encode_record(key_id: str, nonce: bytes, sealed: bytes) -> bytes:
    kid = key_id.encode()
    return bytes([RECORD_VERSION, len(kid)]) + kid + nonce + sealed


def _split(record: bytes):
    """(key id, nonce, sealed PAN) of a stored record; ValueError when malformed."""
    if len(record) < 2 or record[0] != RECORD_VERSION:
        raise ValueError("not a PAN record of a known version")
    end_of_id = 2 + record[1]
    if not 0 < record[1] <= KEY_ID_BYTES_MAX or len(record) < end_of_id + NONCE_BYTES + 16:
        raise ValueError("PAN record is truncated or malformed")
    key_id = record[2:end_of_id].decode("ascii", "strict") if record[2:end_of_id].isascii() else None
    if key_id is None:
        raise ValueError("PAN record names a key id that is not ASCII")
    return key_id, record[end_of_id:end_of_id + NONCE_BYTES], record[end_of_id + NONCE_BYTES:]


def record_key_id(record: bytes) -> str:
    return _split(record)[0]


def read_ring(path: pathlib.Path, kek) -> dict:
    """The key ring a wrapped ring file holds."""
    return json.loads(kek_mod.read_wrapped(kek, path, RING_PURPOSE))


def write_ring(path: pathlib.Path, kek, ring: dict):
    kek_mod.write_wrapped(kek, path, _ring_bytes(ring), RING_PURPOSE)


class KeyRing:
    """The key ring file; rereads it when another process (keys rotate) changed it."""

    def __init__(self, path: pathlib.Path, kek):
        self.path = pathlib.Path(path)
        self.kek = kek
        self._file = WatchedFile(self.path, lambda data: json.loads(
            kek_mod.unwrap(kek, data, RING_PURPOSE, str(self.path))))

    @classmethod
    def load_or_create(cls, data_dir, kek) -> "KeyRing":
        ring = cls(pathlib.Path(data_dir) / kek_mod.DATA_KEY_RING.path, kek)
        if not ring.path.exists():
            key_id = "k1"
            create_private(ring.path, kek_mod.wrap(kek, _ring_bytes({"active": key_id, "keys": {
                key_id: base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}}), RING_PURPOSE))
        ring.key_ids()                      # unwraps now: a wrong KEK is found at start
        return ring

    def _current(self) -> dict:
        return self._file.current()

    @property
    def active_key_id(self) -> str:
        return self._current()["active"]

    def key_ids(self) -> list:
        return sorted(self._current()["keys"])

    def _key(self, key_id: str) -> AESGCM:
        encoded = self._current()["keys"].get(key_id)
        if encoded is None:
            raise KeyError_(f"data key {key_id!r} is not in {self.path} (retired?)")
        return AESGCM(base64.b64decode(encoded))

    def encrypt(self, text: str, card_id: int, purpose: bytes = PAN) -> bytes:
        """A card's PAN (or, with another purpose, e.g. HOLDER, other data of the card),
        bound to the card and the purpose: a record moved to another card or field fails."""
        key_id = self.active_key_id
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._key(key_id).encrypt(nonce, text.encode("utf-8"), card_id.to_bytes(8, "big") + purpose)
        return encode_record(key_id, nonce, sealed)

    def decrypt(self, record: bytes, card_id: int, purpose: bytes = PAN) -> str:
        key_id, nonce, sealed = _split(record)
        return self._key(key_id).decrypt(nonce, sealed, card_id.to_bytes(8, "big") + purpose).decode("utf-8")

    # ---- administration (the keys command) ----------------------------------------

    def add_active_key(self) -> str:
        ring = dict(self._current())
        number = 1 + max(int(k[1:]) for k in ring["keys"] if k[1:].isdigit())
        key_id = f"k{number}"
        ring["keys"] = {**ring["keys"], key_id: base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}
        ring["active"] = key_id
        write_ring(self.path, self.kek, ring)
        return key_id

    def remove_key(self, key_id: str):
        ring = dict(self._current())
        if key_id == ring["active"]:
            raise KeyError_(f"data key {key_id} is the active key and cannot be retired")
        if key_id not in ring["keys"]:
            raise KeyError_(f"data key {key_id!r} is not in the ring")
        ring["keys"] = {k: v for k, v in ring["keys"].items() if k != key_id}
        write_ring(self.path, self.kek, ring)
