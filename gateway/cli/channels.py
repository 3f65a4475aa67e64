"""Client channels to a gateway: mutual TLS with a certificate from `cardgate pki issue`
(or the demo's), or plain text to a gateway in loopback development mode."""
import pathlib

import grpc

from cardgate.gateway.limits import MESSAGE_BYTES_MAX
from cardgate.gateway.security import kek

CHANNEL_OPTIONS = [("grpc.max_send_message_length", MESSAGE_BYTES_MAX * 4),
                   ("grpc.max_receive_message_length", MESSAGE_BYTES_MAX)]


def client_key_pem(cert_dir, name: str) -> bytes:
    """<cert_dir>/<name>.key, or, for a key kept in a data directory's pki/clients
    folder (the demo's), <name>.key.wrapped opened with that data directory's KEK."""
    d = pathlib.Path(cert_dir)
    if (d / f"{name}.key").exists():
        return (d / f"{name}.key").read_bytes()
    wrapped = d / f"{name}.key.wrapped"
    if not wrapped.exists():
        raise FileNotFoundError(f"no key of client certificate {name!r} in {d}; issue one "
                                "with 'cardgate pki issue'")
    data_dir = d.parent.parent                      # DATA_DIR/pki/clients
    return kek.read_wrapped(kek.of_data_dir(data_dir), wrapped, kek.CLIENT_KEY_PURPOSE)


def client_credentials(cert_dir, name: str) -> grpc.ChannelCredentials:
    """Credentials from <cert_dir>/<name>.key (client_key_pem), <name>.crt and ca.crt."""
    d = pathlib.Path(cert_dir)
    missing = [p for p in (d / "ca.crt", d / f"{name}.crt") if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no client certificate {name!r} in {d} (missing "
                                f"{', '.join(p.name for p in missing)}); issue one with "
                                "'cardgate pki issue'")
    return grpc.ssl_channel_credentials(root_certificates=(d / "ca.crt").read_bytes(),
                                        private_key=client_key_pem(d, name),
                                        certificate_chain=(d / f"{name}.crt").read_bytes())


def open_channel(target: str, cert_dir=None, name: str = None, own_connection=False) -> grpc.Channel:
    """own_connection: a TCP connection no other channel shares (grpc shares one between
    channels of equal target and options), e.g. to reach several workers of one port."""
    options = CHANNEL_OPTIONS + ([("grpc.use_local_subchannel_pool", 1)] if own_connection else [])
    if cert_dir is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, client_credentials(cert_dir, name), options=options)
