"""Client channels to a gateway: mutual TLS with a certificate from `cardgate pki issue`
(or the demo's), or plain text to a gateway in loopback development mode."""
import ipaddress
import json
import pathlib
import socket

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


# Several gateways (the nodes of a replicated group): calls go round them, and one answered
# UNAVAILABLE (a follower naming the primary, a node down) is sent again to the next. Every
# mutating request is idempotent by its request id, so sending it again is safe.
GROUP_SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{"name": [{}], "retryPolicy": {
        "maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"]}}]})


def _resolved(host: str, port: int) -> list:
    """A name's IPv4 addresses, or its IPv6 ones if it has none (one channel takes one)."""
    try:
        return socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror:
        return socket.getaddrinfo(host, port, socket.AF_INET6, socket.SOCK_STREAM)


def group_target(target: str):
    """(gRPC target, options) for 'host:port', or for several comma-separated
    ('gw1:50051,gw2:50051'): each name resolved to its addresses, all in one channel.
    ValueError (or socket.gaierror) for a list that cannot be used."""
    if "," not in target:
        return target, []
    names = [t.strip() for t in target.split(",") if t.strip()]
    addresses = []
    for name in names:
        host, _, port = name.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{name!r} in --target is not host:port")
        for *_, sockaddr in _resolved(host.strip("[]"), int(port)):
            ip = ipaddress.ip_address(sockaddr[0])
            address = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
            if address not in addresses:
                addresses.append(address)
    schemes = {"ipv6" if a.startswith("[") else "ipv4" for a in addresses}
    if len(schemes) != 1:
        raise ValueError(f"--target {target!r}: the gateways must all be IPv4 or all IPv6")
    # The server certificate is checked against the first name: a group's nodes share one
    # (they start from copies of one data directory).
    first_host = names[0].rpartition(":")[0].strip("[]")
    return f"{schemes.pop()}:{','.join(addresses)}", [
        ("grpc.service_config", GROUP_SERVICE_CONFIG), ("grpc.enable_retries", 1),
        ("grpc.ssl_target_name_override", first_host)]


def open_channel(target: str, cert_dir=None, name: str = None, own_connection=False) -> grpc.Channel:
    """own_connection: a TCP connection no other channel shares (grpc shares one between
    channels of equal target and options), e.g. to reach several workers of one port.
    target: 'host:port', or the nodes of a replicated group, comma-separated."""
    target, group_options = group_target(target)
    options = CHANNEL_OPTIONS + group_options + \
        ([("grpc.use_local_subchannel_pool", 1)] if own_connection else [])
    if cert_dir is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, client_credentials(cert_dir, name), options=options)
