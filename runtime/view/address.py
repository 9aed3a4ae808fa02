"""The `--view [HOST:]PORT` address: read, checked and bound at once, so a port in use or not allowed is refused
in one line before a model loads."""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass

from segrt.errors import SegError

DEFAULT_HOST = "127.0.0.1"
FIRST_UNPRIVILEGED_PORT = 1024
HIGHEST_PORT = 65535


@dataclass(frozen=True)
class ViewAddress:
    """Where the view listens: `host` as the user named it, the socket family and address it resolves to."""

    host: str
    port: int
    family: socket.AddressFamily
    sockaddr: tuple


def parse_view_address(text: str) -> ViewAddress:
    """`PORT`, `HOST:PORT` or `[IPV6]:PORT` to a resolved address; a SegError naming `--view` where it is not one."""
    host, port_text = _split(text)
    if not port_text.isdigit():
        raise SegError(
            f"--view {text!r}: not [HOST:]PORT (give a port number such as 8080, or 0.0.0.0:8080 to be seen "
            "from other machines)"
        )
    port = int(port_text)
    if port > HIGHEST_PORT:
        raise SegError(f"--view {text!r}: port {port} is not allowed (ports go up to {HIGHEST_PORT}; try 8080)")
    if 0 < port < FIRST_UNPRIVILEGED_PORT and _geteuid() != 0:
        raise SegError(
            f"--view {text!r}: port {port} is not allowed (ports below {FIRST_UNPRIVILEGED_PORT} need root; "
            "use 8080, or 0 for any free port)"
        )
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICSERV)
    except (socket.gaierror, UnicodeError) as exc:
        raise SegError(
            f"--view {text!r}: host {host!r} is not an address of this machine ({exc}); use 127.0.0.1, or "
            "0.0.0.0 to listen on every interface"
        ) from None
    family, _, _, _, sockaddr = infos[0]
    return ViewAddress(host=host, port=port, family=family, sockaddr=sockaddr)


def bind_error(text: str, address: ViewAddress, exc: OSError) -> SegError:
    """The one line for a bind that failed: a port in use, a port not allowed, a host not on this machine."""
    if exc.errno == errno.EADDRINUSE:
        return SegError(
            f"--view {text!r}: port {address.port} is in use by another program; pick another port, or 0 for "
            "any free port"
        )
    if exc.errno == errno.EACCES:
        return SegError(
            f"--view {text!r}: port {address.port} is not allowed here ({os.strerror(exc.errno)}); use 8080, "
            "or 0 for any free port"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return SegError(
            f"--view {text!r}: host {address.host!r} is not an address of this machine; use 127.0.0.1, or "
            "0.0.0.0 to listen on every interface"
        )
    return SegError(f"--view {text!r}: cannot listen there ({os.strerror(exc.errno or 0) or exc}); try another port")


WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # listening everywhere: this machine's browser uses loopback


def url_of(host: str, port: int) -> str:
    """The page's address as a browser on this machine takes it (an IPv6 host in brackets)."""
    host = WILDCARD_HOSTS.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _split(text: str) -> tuple[str, str]:
    text = text.strip()
    if text.startswith("["):  # [::1]:8080
        host, _, rest = text[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else "x"
    host, colon, port_text = text.rpartition(":")
    if not colon:
        return DEFAULT_HOST, port_text
    return host or DEFAULT_HOST, port_text


def _geteuid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else 0
