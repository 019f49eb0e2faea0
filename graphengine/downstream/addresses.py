"""Which downstream URLs may be registered: the guard against server-side request forgery.

A registered URL makes this server send requests wherever it points, so link-local addresses
(169.254.0.0/16, fe80::/10) and the cloud metadata endpoints (169.254.169.254, fd00:ec2::254,
100.100.100.200, metadata.google.internal, …) are refused unless explicitly allowed, and so are
unspecified and multicast addresses and any scheme other than http(s). Names are resolved, and
every address they resolve to is checked (again before each call, against DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)


class AddressRefused(ValueError):
    """A downstream URL that may not be used; the message says why."""


def normalize_url(text: str) -> str:
    """``http://host:port/base/`` with a trailing slash (sd-proxy's form); userinfo is refused."""
    text = text.strip().strip('"').strip()
    if not text:
        raise AddressRefused("the body must be the server's base URL, e.g. http://127.0.0.1:7860")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise AddressRefused(f"scheme {parts.scheme!r} is not allowed; use http or https")
    if not parts.hostname:
        raise AddressRefused(f"{text!r} has no host")
    if parts.username or parts.password:
        raise AddressRefused("credentials in the URL are not accepted")
    if parts.query or parts.fragment:
        raise AddressRefused("the URL may not have a query or fragment")
    try:
        port = parts.port
    except ValueError:
        raise AddressRefused(f"{text!r} has an invalid port") from None
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _refused_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    return None


def check_url(url: str, *, allow_link_local: bool = False) -> None:
    """Raise ``AddressRefused`` if ``url`` points at a refused address (resolving its host name)."""
    host = urlsplit(url).hostname or ""
    if host.lower().rstrip(".") in METADATA_HOSTS and not allow_link_local:
        raise AddressRefused(f"{host} is a cloud metadata host")
    try:
        literal = ipaddress.ip_address(host)
        addresses = [literal]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as exc:
            raise AddressRefused(f"cannot resolve {host}: {exc}") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    for address in addresses:
        reason = _refused_reason(address)
        if reason is None:
            continue
        if allow_link_local and reason in ("a link-local address", "a cloud metadata address"):
            continue
        raise AddressRefused(f"{host} resolves to {address}, {reason}; refused")
