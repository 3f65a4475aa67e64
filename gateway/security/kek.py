"""The key-encryption key (KEK): it wraps every key that protects card data (the data
key ring, the PAN index key, the PIN verifier key, the terminals' PIN keys) and the CA's and job signer's private
keys (and the server's TLS key). It is never in the data directory, so the data
directory and its backups alone give away no key and no card number.

Where the KEK is, first found:
  CARDGATE_PKCS11_MODULE   a PKCS#11 library (an HSM; tests use SoftHSM2): the KEK is
                           the AES-256 key labelled CARDGATE_PKCS11_KEY (default
                           "cardgate-kek") on the token labelled CARDGATE_PKCS11_TOKEN,
                           logged in with CARDGATE_PKCS11_PIN (or the first line of
                           CARDGATE_PKCS11_PIN_FILE). Made on the token (sensitive, not
                           extractable) when a new store needs it; wrapping and unwrapping
                           happen on the token (AES-GCM), the KEK never leaves it.
  CARDGATE_KEK_FILE        a file of 32 random bytes (mode 0600), outside the data
                           directory; made when a new store needs it.
  CARDGATE_KEK             the same 32 bytes as 64 hexadecimal characters.
  (none of them)           <data directory>.kek, a file beside the data directory: made
                           with a new store, for a first start and small sites. A backup
                           of the data directory does not hold it; keep it elsewhere.

A wrapped file is MAGIC, the KEK's kind, a 12-byte nonce, then AES-256-GCM of the key
bound to what it is (its purpose, as associated data): a wrapped PAN index key cannot
pass for the PIN key. README "Key ceremonies" says how to start, rotate the KEK and
recover from the loss of a token.
"""
import binascii
import logging
import os
import pathlib
import secrets
import threading
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardgate.gateway.store.files import create_private, write_file

log = logging.getLogger("cardgate.keys")

MAGIC = b"CGW1"
KEK_BYTES = 32
NONCE_BYTES = 12
KIND_LOCAL, KIND_PKCS11 = 1, 2
PKCS11_KEY_LABEL_DEFAULT = "cardgate-kek"
ENV_FILE, ENV_HEX = "CARDGATE_KEK_FILE", "CARDGATE_KEK"
ENV_MODULE, ENV_TOKEN, ENV_PIN, ENV_PIN_FILE, ENV_KEY = (
    "CARDGATE_PKCS11_MODULE", "CARDGATE_PKCS11_TOKEN", "CARDGATE_PKCS11_PIN",
    "CARDGATE_PKCS11_PIN_FILE", "CARDGATE_PKCS11_KEY")


class Wrapped(NamedTuple):
    """A wrapped file of a data directory: where, and what it holds (the associated data
    it is bound to)."""
    path: str
    purpose: bytes


DATA_KEY_RING = Wrapped("keys/data-keys.wrapped", b"cardgate data key ring")
PAN_INDEX_KEY = Wrapped("keys/pan-index.wrapped", b"cardgate PAN index key")
PIN_KEY = Wrapped("keys/pin-verifier.wrapped", b"cardgate PIN verifier key")
CA_KEY = Wrapped("pki/ca.key.wrapped", b"cardgate CA key")
SIGNER_KEY = Wrapped("pki/job-signer.key.wrapped", b"cardgate job signer key")
SERVER_KEY = Wrapped("pki/server.key.wrapped", b"cardgate server TLS key")
TERMINAL_PIN_KEYS = Wrapped("keys/terminal-pin-keys.wrapped", b"cardgate terminal PIN keys")
ALL_WRAPPED = (DATA_KEY_RING, PAN_INDEX_KEY, PIN_KEY, TERMINAL_PIN_KEYS, CA_KEY, SIGNER_KEY,
               SERVER_KEY)
CLIENT_KEY_PURPOSE = b"cardgate client key"     # pki/clients/NAME.key.wrapped (the demo's)


class KekError(Exception):
    """The KEK is missing, malformed, or not the one a file was wrapped under."""


class LocalKek:
    """A KEK held in this process (from a file or the environment)."""
    kind = KIND_LOCAL

    def __init__(self, secret: bytes, where: str):
        if len(secret) != KEK_BYTES:
            raise KekError(f"the KEK in {where} must be {KEK_BYTES} bytes, got {len(secret)}")
        self._aead = AESGCM(secret)
        self.where = where

    def seal(self, nonce: bytes, data: bytes, purpose: bytes) -> bytes:
        return self._aead.encrypt(nonce, data, purpose)

    def open(self, nonce: bytes, sealed: bytes, purpose: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, sealed, purpose)
        except InvalidTag:
            raise KekError(f"the KEK in {self.where} does not open it") from None


class Pkcs11Kek:
    """A KEK that never leaves its PKCS#11 token: the token seals and opens."""
    kind = KIND_PKCS11

    def __init__(self, module: str, token_label: str, pin: str, key_label: str, create: bool):
        import pkcs11               # python-pkcs11: only where a token is configured
        self._pkcs11 = pkcs11
        self._lock = threading.Lock()
        self.where = f"PKCS#11 token {token_label!r} (key {key_label!r})"
        try:
            token = pkcs11.lib(module).get_token(token_label=token_label)
            self._session = token.open(rw=True, user_pin=pin)
        except (pkcs11.PKCS11Error, OSError, RuntimeError) as exc:
            raise KekError(f"cannot open {self.where} with {module}: "
                           f"{type(exc).__name__} {exc}") from None
        try:
            self._key = self._session.get_key(label=key_label, key_type=pkcs11.KeyType.AES)
        except pkcs11.NoSuchKey:
            if not create:
                raise KekError(f"{self.where} holds no such key") from None
            self._key = self._session.generate_key(
                pkcs11.KeyType.AES, KEK_BYTES * 8, label=key_label, store=True,
                template={pkcs11.Attribute.SENSITIVE: True, pkcs11.Attribute.EXTRACTABLE: False})
            log.warning("made the KEK %s", self.where)

    def seal(self, nonce: bytes, data: bytes, purpose: bytes) -> bytes:
        with self._lock:
            return self._key.encrypt(data, mechanism=self._pkcs11.Mechanism.AES_GCM,
                                     mechanism_param=self._pkcs11.GCMParams(nonce, purpose, 128))

    def open(self, nonce: bytes, sealed: bytes, purpose: bytes) -> bytes:
        with self._lock:
            try:
                return self._key.decrypt(sealed, mechanism=self._pkcs11.Mechanism.AES_GCM,
                                         mechanism_param=self._pkcs11.GCMParams(nonce, purpose, 128))
            except self._pkcs11.PKCS11Error:
                raise KekError(f"the KEK of {self.where} does not open it") from None


def wrap(kek, data: bytes, purpose: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return MAGIC + bytes([kek.kind]) + nonce + kek.seal(nonce, data, purpose)


def unwrap(kek, blob: bytes, purpose: bytes, where: str = "a wrapped key") -> bytes:
    if len(blob) < len(MAGIC) + 1 + NONCE_BYTES + 16 or not blob.startswith(MAGIC):
        raise KekError(f"{where} is not a wrapped key of this cardgate")
    kind = blob[len(MAGIC)]
    if kind != kek.kind:
        raise KekError(f"{where} was wrapped under a KEK of another kind "
                       f"({'a PKCS#11 token' if kind == KIND_PKCS11 else 'a key file or variable'})"
                       f" than {kek.where}")
    start = len(MAGIC) + 1
    try:
        return kek.open(blob[start:start + NONCE_BYTES], blob[start + NONCE_BYTES:], purpose)
    except KekError as exc:
        raise KekError(f"{where}: {exc}; it was wrapped under another KEK (see README, "
                       "key ceremonies)") from None


def read_wrapped(kek, path, purpose: bytes) -> bytes:
    """What the wrapped file at path holds."""
    return unwrap(kek, pathlib.Path(path).read_bytes(), purpose, str(path))


def write_wrapped(kek, path, data: bytes, purpose: bytes):
    """Replace the file at path (0600) with data wrapped under kek."""
    write_file(path, wrap(kek, data, purpose), private=True)


def default_file(data_dir) -> pathlib.Path:
    """The KEK file used when nothing else is configured: beside the data directory."""
    data_dir = pathlib.Path(data_dir).resolve()
    return data_dir.parent / (data_dir.name + ".kek")


def file_kek(path: pathlib.Path, data_dir: pathlib.Path, create: bool) -> LocalKek:
    path = path.resolve()
    if path.is_relative_to(pathlib.Path(data_dir).resolve()):
        raise KekError(f"the KEK file {path} is inside the data directory {data_dir}: keep it "
                       "elsewhere (a backup of the data directory must not hold it)")
    if not path.exists():
        if not create:
            raise KekError(f"no KEK file {path}: the keys of {data_dir} are wrapped under a KEK "
                           f"that is not here; give it with {ENV_FILE}, {ENV_HEX} or a PKCS#11 "
                           "token (see README, key ceremonies)")
        if create_private(path, secrets.token_bytes(KEK_BYTES)):
            log.warning("made the key-encryption key %s; keep it (and a copy) apart from the "
                        "data directory and its backups", path)
    return LocalKek(path.read_bytes(), str(path))


def resolve(data_dir, *, create: bool, environ=None):
    """The KEK for data_dir, as the environment says (module docstring). create: a new
    store may have a KEK made for it; an existing one never gets a new one silently."""
    env = os.environ if environ is None else environ
    data_dir = pathlib.Path(data_dir)
    if env.get(ENV_MODULE):
        pin = env.get(ENV_PIN)
        if pin is None and env.get(ENV_PIN_FILE):
            pin = pathlib.Path(env[ENV_PIN_FILE]).read_text().splitlines()[0]
        if not env.get(ENV_TOKEN) or pin is None:
            raise KekError(f"{ENV_MODULE} is set: {ENV_TOKEN} and {ENV_PIN} (or {ENV_PIN_FILE}) "
                           "are needed too")
        return Pkcs11Kek(env[ENV_MODULE], env[ENV_TOKEN], pin,
                         env.get(ENV_KEY) or PKCS11_KEY_LABEL_DEFAULT, create)
    if env.get(ENV_HEX):
        try:
            return LocalKek(binascii.unhexlify(env[ENV_HEX].strip()), ENV_HEX)
        except binascii.Error:
            raise KekError(f"{ENV_HEX} must be {KEK_BYTES * 2} hexadecimal characters") from None
    if env.get(ENV_FILE):
        return file_kek(pathlib.Path(env[ENV_FILE]), data_dir, create)
    return file_kek(default_file(data_dir), data_dir, create)


def rewrap(data_dir, old_kek, new_kek) -> list:
    """Wrap every wrapped file of data_dir under new_kek instead of old_kek (a rotation of
    the KEK); each file is replaced in one step. Returns the files rewrapped."""
    data_dir = pathlib.Path(data_dir)
    opened = {}
    for wrapped in ALL_WRAPPED:         # all opened first: a wrong old KEK changes nothing
        path = data_dir / wrapped.path
        if path.exists():
            opened[path] = (read_wrapped(old_kek, path, wrapped.purpose), wrapped.purpose)
    for path, (data, purpose) in opened.items():
        write_wrapped(new_kek, path, data, purpose)
    return sorted(str(p.relative_to(data_dir)) for p in opened)


class WrappedSecret:
    """A small secret kept wrapped in one file of a data directory (a Wrapped):
    `load_or_create` makes it (random) on first use; `read` unwraps it."""

    def __init__(self, data_dir, wrapped: Wrapped, kek):
        self.path, self.kek, self.purpose = pathlib.Path(data_dir) / wrapped.path, kek, wrapped.purpose

    def read(self) -> bytes:
        return read_wrapped(self.kek, self.path, self.purpose)

    def load_or_create(self, size: int) -> bytes:
        if not self.path.exists():
            create_private(self.path, wrap(self.kek, secrets.token_bytes(size), self.purpose))
        return self.read()


_ENV_NAMES = (ENV_MODULE, ENV_TOKEN, ENV_PIN, ENV_PIN_FILE, ENV_KEY, ENV_FILE, ENV_HEX)
_opened = {}
_opened_lock = threading.Lock()


def of_data_dir(data_dir):
    """The KEK of a data directory, opened once per process (a token session is kept).
    A data directory with no wrapped file yet is new: its KEK may be made."""
    data_dir = pathlib.Path(data_dir).resolve()
    key = (data_dir, tuple(os.environ.get(name) for name in _ENV_NAMES))
    with _opened_lock:
        if key not in _opened:
            existing = any((data_dir / wrapped.path).exists() for wrapped in ALL_WRAPPED)
            _opened[key] = resolve(data_dir, create=not existing)
        return _opened[key]
