"""The personalization job file a gateway gives a card bureau, and how it is protected.

A job is JSON Lines: a header, one line per card, and a signature line.

    {"format": "cardgate-personalization-job", "version": 1, "job_id": "…", "cards": N,
     "created_at_s": …, "master_key_label": "…",
     "chip": {"aid": "F00101", "value_limit_minor": 0, "system_id": "6361726467617465",
              "key_derivation": {…}}}
    {"seq": 1, "card_id": …, "pan": "…", "holder": "…", "expiry_yymm": "2912",
     "service_code": "701", "track1": "%B…?", "track2": ";…?", "emboss": […],
     "chip": {"aid": "F00101", "program_id": 1, "value_limit_minor": 0, "system_id": "…"}}

The chip profile's key_derivation (devices.personalize.key_derivation) states how each
card's keys derive from the bureau's master key (AN10922, with the UID, the AID, the
system_id and the key number), so that a terminal of any vendor can derive them.
    …
    {"signature": {"algorithm": "ecdsa-p256-sha256", "certificate": "<PEM>", "value": "<base64>"}}

The signature covers every byte before its line. The certificate is the gateway's
job-signing certificate: issued by the gateway's CA (which the bureau already trusts for
TLS) and naming urn:cardgate:job-signer.

Sealed (encrypted to the bureau's EC P-256 certificate), the file is two lines:

    {"format": "cardgate-sealed-job", "version": 1, "recipient_sha256": "…",
     "ephemeral_key": "<base64 X9.62 point>", "nonce": "<base64>"}
    <base64 of AES-256-GCM(signed job), the first line as associated data>

with the key from ECDH (an ephemeral key and the certificate's) through HKDF-SHA256.
"""
import base64
import dataclasses
import datetime
import json
import os

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

JOB_FORMAT = "cardgate-personalization-job"
SEALED_FORMAT = "cardgate-sealed-job"
VERSION = 1
SIGNER_URI = "urn:cardgate:job-signer"
SIGNATURE_ALGORITHM = "ecdsa-p256-sha256"
HKDF_INFO = b"cardgate sealed job v1"


class JobFileError(ValueError):
    """A job file that is not one, is damaged, or is not for this bureau."""


@dataclasses.dataclass(frozen=True)
class JobCard:
    seq: int
    card_id: int
    pan: str
    holder: str
    expiry_yymm: str
    service_code: str
    track1: str
    track2: str
    emboss: tuple
    chip: dict


@dataclasses.dataclass(frozen=True)
class Job:
    header: dict
    cards: tuple

    @property
    def job_id(self) -> str:
        return self.header["job_id"]


def _line(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8") + b"\n"


def certificate_sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


# ---- writing (the gateway) ------------------------------------------------------------

def sign(header: dict, cards: list, key, cert: x509.Certificate) -> bytes:
    body = _line({"format": JOB_FORMAT, "version": VERSION, **header}) + \
        b"".join(_line(card) for card in cards)
    value = key.sign(body, ec.ECDSA(hashes.SHA256()))
    return body + _line({"signature": {
        "algorithm": SIGNATURE_ALGORITHM, "value": base64.b64encode(value).decode(),
        "certificate": cert.public_bytes(serialization.Encoding.PEM).decode()}})


def recipient_key(cert: x509.Certificate):
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise JobFileError("the bureau's certificate must hold an EC P-256 key "
                           f"(it holds {type(key).__name__.replace('_', '')})")
    return key


def _content_key(shared: bytes, recipient_sha256: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None,
                info=HKDF_INFO + bytes.fromhex(recipient_sha256)).derive(shared)


def seal(signed: bytes, cert: x509.Certificate) -> bytes:
    public = recipient_key(cert)
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    fingerprint = certificate_sha256(cert)
    nonce = os.urandom(12)
    head = _line({"format": SEALED_FORMAT, "version": VERSION, "recipient_sha256": fingerprint,
                  "ephemeral_key": base64.b64encode(ephemeral.public_key().public_bytes(
                      serialization.Encoding.X962,
                      serialization.PublicFormat.UncompressedPoint)).decode(),
                  "nonce": base64.b64encode(nonce).decode()})
    key = _content_key(ephemeral.exchange(ec.ECDH(), public), fingerprint)
    sealed = AESGCM(key).encrypt(nonce, signed, head)
    return head + base64.b64encode(sealed) + b"\n"


# ---- reading (the bureau) -------------------------------------------------------------

def _json(line: bytes, where: str) -> dict:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise JobFileError(f"{where} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise JobFileError(f"{where} is not a JSON object")
    return value


def is_sealed(data: bytes) -> bool:
    first = data.split(b"\n", 1)[0]
    try:
        return json.loads(first).get("format") == SEALED_FORMAT
    except (ValueError, AttributeError):
        return False


def unseal(data: bytes, key, cert: x509.Certificate = None) -> bytes:
    """The signed job inside a sealed file, with the bureau's private key."""
    head, _, rest = data.partition(b"\n")
    header = _json(head, "the sealed file's first line")
    if header.get("format") != SEALED_FORMAT or header.get("version") != VERSION:
        raise JobFileError("not a sealed cardgate job of version 1")
    if cert is not None and certificate_sha256(cert) != header.get("recipient_sha256"):
        raise JobFileError(f"the job is sealed for certificate {header.get('recipient_sha256')}, "
                           f"not for this one ({certificate_sha256(cert)})")
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), base64.b64decode(header["ephemeral_key"]))
        nonce = base64.b64decode(header["nonce"])
        shared = key.exchange(ec.ECDH(), ephemeral)
        return AESGCM(_content_key(shared, header["recipient_sha256"])).decrypt(
            nonce, base64.b64decode(rest.strip()), head + b"\n")
    except InvalidTag:
        raise JobFileError("the sealed job cannot be opened with this key, or it was altered") from None
    except (KeyError, ValueError, TypeError) as exc:
        raise JobFileError(f"the sealed job is damaged ({exc})") from None


def _check_signer(cert: x509.Certificate, ca: x509.Certificate, now: datetime.datetime):
    try:
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                               ec.ECDSA(cert.signature_hash_algorithm))
    except (InvalidSignature, TypeError, AttributeError):
        raise JobFileError("the job's signing certificate was not issued by the gateway's CA") from None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise JobFileError("the job's signing certificate is not valid now")
    try:
        uris = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if SIGNER_URI not in uris:
        raise JobFileError("the job is signed by a certificate that is not for signing jobs")


def verify(signed: bytes, ca: x509.Certificate, now: datetime.datetime = None) -> Job:
    """The job of a signed file, once its signature and signer are checked."""
    body, _, last = signed.rstrip(b"\n").rpartition(b"\n")
    body += b"\n"
    signature = _json(last, "the signature line").get("signature")
    if not isinstance(signature, dict) or signature.get("algorithm") != SIGNATURE_ALGORITHM:
        raise JobFileError(f"the last line must be a {SIGNATURE_ALGORITHM} signature")
    try:
        cert = x509.load_pem_x509_certificate(signature["certificate"].encode())
        value = base64.b64decode(signature["value"])
    except (KeyError, ValueError, TypeError) as exc:
        raise JobFileError(f"the signature line is damaged ({exc})") from None
    _check_signer(cert, ca, now or datetime.datetime.now(datetime.timezone.utc))
    try:
        cert.public_key().verify(value, body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise JobFileError("the job's signature does not match its content: it was altered") from None
    lines = body.rstrip(b"\n").split(b"\n")
    header = _json(lines[0], "the header")
    if header.get("format") != JOB_FORMAT or header.get("version") != VERSION:
        raise JobFileError("not a cardgate personalization job of version 1")
    cards = []
    for n, line in enumerate(lines[1:], 1):
        card = _json(line, f"card line {n}")
        try:
            cards.append(JobCard(**{**card, "emboss": tuple(card["emboss"])}))
        except (TypeError, KeyError) as exc:
            raise JobFileError(f"card line {n} does not hold a card ({exc})") from None
        if card["seq"] != n:
            raise JobFileError(f"card line {n} has sequence number {card['seq']}")
    if header.get("cards") != len(cards):
        raise JobFileError(f"the header says {header.get('cards')} cards, the file holds {len(cards)}")
    return Job(header, tuple(cards))


def read(data: bytes, ca: x509.Certificate, key=None, cert: x509.Certificate = None) -> Job:
    """A job file as it came from the gateway: sealed (needs the bureau's key) or only
    signed."""
    if is_sealed(data):
        if key is None:
            raise JobFileError("the job is encrypted to the bureau's certificate: give its private key")
        data = unseal(data, key, cert)
    return verify(data, ca)
