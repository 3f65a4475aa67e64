"""The gateway's own PKI: a CA, the server certificate, client certificates per role,
and revocation — with `cryptography`, kept in the data directory's pki/ folder.

A client's role and bindings are in its certificate's URI subject alternative name:
    urn:cardgate:terminal:<merchant_id>:<outlet_id>
    urn:cardgate:bureau
    urn:cardgate:operator                       (the host's: every range and partner)
    urn:cardgate:operator:ranges:<id>[,<id>]    (an issuer's: those card ranges, scope.py)
    urn:cardgate:operator:partner:<id>          (a coalition partner's)
The subject common name is a label for people (e.g. "pump-controller-7"). Private keys
are written with mode 0600; the gateway's own (the CA's, the server's and the job
signer's) only wrapped by the key-encryption key (kek.py), so that the data directory
alone cannot sign or serve anything.
Client certificates last CLIENT_VALID_DAYS_DEFAULT days; `cardgate pki renew` makes the
next one. Revocation is a file the gateway rereads when it changes,
so a revoked certificate is refused on its next call without a restart.
"""
import dataclasses
import datetime
import ipaddress
import json
import pathlib
import re
import secrets
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cardgate.gateway.issuing.job_file import SIGNER_URI
from cardgate.gateway.security import kek as kek_mod
from cardgate.gateway.store.files import WatchedFile, write_file

ROLES = ("terminal", "bureau", "operator")
URI_PREFIX = "urn:cardgate:"
CA_VALID_DAYS = 3650
SERVER_VALID_DAYS = 825
CLIENT_VALID_DAYS_DEFAULT = 365
SIGNER_RENEW_DAYS = 30
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")     # id-kp-documentSigning, RFC 9336
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class PkiError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who is calling, as its certificate says."""
    role: str
    name: str
    serial: int
    merchant_id: str = ""
    outlet_id: str = ""
    not_after_s: float = float("inf")      # the certificate's end (an open connection outlives it)
    ranges: frozenset = frozenset()        # a scoped operator's card ranges (scope.py)
    partner_id: int = 0                    # a scoped operator's coalition partner

    def describe(self) -> str:
        where = f" of merchant {self.merchant_id} outlet {self.outlet_id}" if self.role == "terminal" else ""
        return f"{self.role} {self.name!r}{where} (certificate {self.serial:x})"

    @property
    def scoped(self) -> bool:
        return bool(self.ranges or self.partner_id)

    def scope(self) -> str:
        if self.ranges:
            return "card ranges " + ", ".join(str(r) for r in sorted(self.ranges))
        return f"partner {self.partner_id}" if self.partner_id else "everything"


def check_id(value: str, what: str) -> str:
    if not _ID.match(value or ""):
        raise PkiError(f"{what} must be 1 to 64 letters, digits, '.', '_' or '-', got {value!r}")
    return value


def identity_uri(role: str, merchant_id: str = "", outlet_id: str = "", ranges=(),
                 partner_id: int = 0) -> str:
    if role not in ROLES:
        raise PkiError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "terminal":
        return f"{URI_PREFIX}terminal:{check_id(merchant_id, 'merchant')}:{check_id(outlet_id, 'outlet')}"
    if merchant_id or outlet_id:
        raise PkiError(f"only terminals are bound to a merchant and outlet, not a {role}")
    if (ranges or partner_id) and role != "operator":
        raise PkiError(f"only operators are scoped to card ranges or a partner, not a {role}")
    if ranges and partner_id:
        raise PkiError("an operator is scoped to card ranges or to a partner, not both")
    if ranges:
        return f"{URI_PREFIX}operator:ranges:{','.join(str(_scope_id(r)) for r in sorted(set(ranges)))}"
    if partner_id:
        return f"{URI_PREFIX}operator:partner:{_scope_id(partner_id)}"
    return URI_PREFIX + role


def _scope_id(value) -> int:
    value = int(value)
    if not 1 <= value <= 0xFFFF_FFFF:
        raise PkiError(f"a range or partner id is 1 to 4294967295, got {value}")
    return value


def identity_of(cert: x509.Certificate) -> Identity:
    try:
        uris = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except x509.ExtensionNotFound:
        uris, names = [], []
    except Exception as exc:  # cryptography's parse errors (duplicate or malformed extensions)
        raise PkiError(f"certificate cannot be read ({type(exc).__name__}: {exc})") from None
    ours = [u for u in uris if u.startswith(URI_PREFIX)]
    if len(ours) != 1:
        raise PkiError("certificate carries no cardgate role")
    parts = ours[0][len(URI_PREFIX):].split(":")
    name = str(names[0].value) if names else ""
    not_after_s = cert.not_valid_after_utc.timestamp()
    if parts[0] == "terminal" and len(parts) == 3:
        return Identity("terminal", name, cert.serial_number, check_id(parts[1], "merchant"),
                        check_id(parts[2], "outlet"), not_after_s)
    if len(parts) == 1 and parts[0] in ("bureau", "operator"):
        return Identity(parts[0], name, cert.serial_number, not_after_s=not_after_s)
    if parts[0] == "operator" and len(parts) == 3 and parts[1] in ("ranges", "partner"):
        try:
            ids = frozenset(_scope_id(v) for v in parts[2].split(","))
        except ValueError as exc:
            raise PkiError(f"certificate carries a malformed operator scope ({exc})") from None
        if parts[1] == "partner" and len(ids) == 1:
            return Identity("operator", name, cert.serial_number, not_after_s=not_after_s,
                            partner_id=next(iter(ids)))
        if parts[1] == "ranges":
            return Identity("operator", name, cert.serial_number, not_after_s=not_after_s,
                            ranges=ids)
    raise PkiError(f"certificate carries an unknown cardgate role {ours[0]!r}")


def _parse_revoked(data: bytes) -> frozenset:
    return frozenset(int(s, 16) for s in json.loads(data)["serials"])


def _cert_pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _host_name(host: str):
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class Pki:
    """The pki/ folder of one data directory."""

    def __init__(self, data_dir):
        self.dir = pathlib.Path(data_dir) / "pki"
        self.data_dir = pathlib.Path(data_dir)
        # The CA's, the server's and the job signer's keys: kek.CA_KEY, SERVER_KEY and
        # SIGNER_KEY, kept wrapped by the KEK (_read_wrapped, _write_wrapped).
        self.ca_cert_path = self.dir / "ca.crt"
        self.server_cert_path = self.dir / "server.crt"
        self.revoked_path = self.dir / "revoked.json"
        self.issued_path = self.dir / "issued.jsonl"
        self.signer_cert_path = self.dir / "job-signer.crt"

    def _write_wrapped(self, wrapped, key):
        kek_mod.write_wrapped(kek_mod.of_data_dir(self.data_dir), self.data_dir / wrapped.path,
                              _key_pem(key), wrapped.purpose)

    def _read_wrapped(self, wrapped):
        return serialization.load_pem_private_key(kek_mod.read_wrapped(
            kek_mod.of_data_dir(self.data_dir), self.data_dir / wrapped.path, wrapped.purpose), None)

    # ---- creation --------------------------------------------------------------

    def ensure(self, server_hosts=("localhost", "127.0.0.1", "::1")) -> bool:
        """Create the CA and the server certificate (naming server_hosts, DNS names or IP
        addresses) unless they exist. True if anything was created."""
        created = False
        if not self.ca_cert_path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cardgate"),
                              x509.NameAttribute(NameOID.COMMON_NAME, "cardgate gateway CA")])
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(_now() - datetime.timedelta(minutes=5))
                    .not_valid_after(_now() + datetime.timedelta(days=CA_VALID_DAYS))
                    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                    .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                 False, False), critical=True)
                    .sign(key, hashes.SHA256()))
            self._write_wrapped(kek_mod.CA_KEY, key)
            write_file(self.ca_cert_path, _cert_pem(cert), private=False)
            created = True
        if created or not self.server_cert_path.exists():
            sans = [_host_name(h) for h in dict.fromkeys(server_hosts)]
            key, cert = self._sign("cardgate gateway", sans, SERVER_VALID_DAYS,
                                   ExtendedKeyUsageOID.SERVER_AUTH)
            self._write_wrapped(kek_mod.SERVER_KEY, key)
            write_file(self.server_cert_path, _cert_pem(cert), private=False)
            created = True
        return created

    def _ca(self):
        key = self._read_wrapped(kek_mod.CA_KEY)
        cert = x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())
        return key, cert

    def _sign(self, common_name, sans, valid_days, usage):
        ca_key, ca_cert = self._ca()
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(_now() - datetime.timedelta(minutes=5))
                .not_valid_after(_now() + datetime.timedelta(days=valid_days))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return key, cert

    def issue(self, role, name, out_dir, *, merchant_id="", outlet_id="", ranges=(),
              partner_id=0, valid_days=CLIENT_VALID_DAYS_DEFAULT) -> Identity:
        """Write <out_dir>/<name>.key (0600), <name>.crt and ca.crt for one client (an
        operator scoped to card ranges or a partner, if given). A key written inside the
        data directory (the demo's, or the default folder) is kept wrapped by the KEK,
        as <name>.key.wrapped (channels.client_key_pem opens it)."""
        check_id(name, "name")
        uri = identity_uri(role, merchant_id, outlet_id, ranges, partner_id)
        key, cert = self._sign(name, [x509.UniformResourceIdentifier(uri)], valid_days,
                               ExtendedKeyUsageOID.CLIENT_AUTH)
        out = pathlib.Path(out_dir)
        if out.resolve().is_relative_to(self.data_dir.resolve()):
            kek_mod.write_wrapped(kek_mod.of_data_dir(self.data_dir), out / f"{name}.key.wrapped",
                                  _key_pem(key), kek_mod.CLIENT_KEY_PURPOSE)
        else:
            write_file(out / f"{name}.key", _key_pem(key), private=True)
        write_file(out / f"{name}.crt", _cert_pem(cert), private=False)
        write_file(out / "ca.crt", self.ca_cert_path.read_bytes(), private=False)
        identity = identity_of(cert)
        with open(self.issued_path, "a") as f:
            f.write(json.dumps({"serial": f"{cert.serial_number:x}", "role": role, "name": name,
                                "merchant_id": merchant_id, "outlet_id": outlet_id,
                                "scope": identity.scope() if identity.scoped else "",
                                "not_after": cert.not_valid_after_utc.isoformat()}) + "\n")
        return identity

    def renew(self, old: x509.Certificate, out_dir, *, valid_days=CLIENT_VALID_DAYS_DEFAULT) -> Identity:
        """A new certificate and key for the client `old` names (this CA's only)."""
        ca_cert = load_certificate(self.ca_cert_path)
        if old.issuer != ca_cert.subject:
            raise PkiError("the certificate was not issued by this gateway's CA")
        identity = identity_of(old)
        return self.issue(identity.role, identity.name, out_dir, merchant_id=identity.merchant_id,
                          outlet_id=identity.outlet_id, ranges=identity.ranges,
                          partner_id=identity.partner_id, valid_days=valid_days)

    def job_signer(self):
        """(key, certificate) that sign personalization jobs for card bureaus: made on
        first use, and made again when less than SIGNER_RENEW_DAYS of it are left."""
        if self.signer_cert_path.exists():
            cert = load_certificate(self.signer_cert_path)
            if cert.not_valid_after_utc - _now() > datetime.timedelta(days=SIGNER_RENEW_DAYS):
                return self._read_wrapped(kek_mod.SIGNER_KEY), cert
        if not self.ca_cert_path.exists():
            raise PkiError("the gateway has no CA (it runs without TLS), so it cannot sign jobs")
        key, cert = self._sign("cardgate job signer", [x509.UniformResourceIdentifier(SIGNER_URI)],
                               SERVER_VALID_DAYS, DOCUMENT_SIGNING)
        self._write_wrapped(kek_mod.SIGNER_KEY, key)
        write_file(self.signer_cert_path, _cert_pem(cert), private=False)
        return key, cert

    # ---- revocation ------------------------------------------------------------

    def revoked_serials(self) -> frozenset:
        if not self.revoked_path.exists():
            return frozenset()
        return _parse_revoked(self.revoked_path.read_bytes())

    def revoke(self, serial: int):
        serials = self.revoked_serials() | {serial}
        write_file(self.revoked_path, json.dumps(
            {"serials": sorted(f"{s:x}" for s in serials)}, indent=1).encode(), private=False)

    # ---- credentials -----------------------------------------------------------

    def tls_server_context(self) -> ssl.SSLContext:
        """A server TLS context with the gateway's certificate that requires a client
        certificate of its CA (for the metrics endpoint). The server key, unwrapped in
        memory, reaches OpenSSL as a file encrypted under a one-time password."""
        key_pem, cert_pem, ca_pem = self.server_credentials_material()
        password = secrets.token_bytes(32)
        key = serialization.load_pem_private_key(key_pem, None)
        with tempfile.NamedTemporaryFile(suffix=".pem") as sealed, \
                tempfile.NamedTemporaryFile(suffix=".pem") as chain:
            sealed.write(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(password)))
            chain.write(cert_pem)
            sealed.flush()
            chain.flush()
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=ca_pem.decode())
            context.load_cert_chain(chain.name, sealed.name, password=password)
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def server_credentials_material(self):
        return (_key_pem(self._read_wrapped(kek_mod.SERVER_KEY)), self.server_cert_path.read_bytes(),
                self.ca_cert_path.read_bytes())


class RevocationList:
    """The revoked serials, reread whenever the file changes (checked on every call)."""

    def __init__(self, pki: Pki):
        self._file = WatchedFile(pki.revoked_path, _parse_revoked, missing=frozenset())

    def is_revoked(self, serial: int) -> bool:
        return serial in self._file.current()


def load_certificate(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pathlib.Path(path).read_bytes())
