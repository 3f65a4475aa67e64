"""Listen and target addresses ("host:port", "[v6]:port")."""
import ipaddress


def host_of(address: str) -> str:
    return address.rsplit(":", 1)[0].strip("[]")


def is_loopback(address: str) -> bool:
    host = host_of(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
