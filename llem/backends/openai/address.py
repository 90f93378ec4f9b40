"""A server's base URL (``backend.url``): its form, whether it is this machine, whether it answers.

The form is checked by the schema (:func:`check_url`); whether the host is this machine is decided
from the addresses it resolves to (all loopback: ``127.0.0.0/8``, ``::1``), never from its spelling;
pre-flight opens one TCP connection to it (:func:`check_reachable`) before anything runs.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from llem.errors import UsageError

SCHEMES = {"http": 80, "https": 443}
CONNECT_TIMEOUT_S = 3.0  # pre-flight's TCP connection to backend.url


def check_url(url: str) -> str:
    """``url`` when it is ``http(s)://host[:port][/path]`` (no query, fragment or credentials);
    else ValueError saying what is wrong."""
    example = "e.g. http://127.0.0.1:8000"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port that is no number or out of range)
    except ValueError as exc:
        raise ValueError(f"backend.url={url!r} is malformed ({exc}): {example}") from None
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"backend.url={url!r} must start with http:// or https:// (not "
            f"{parts.scheme or 'no scheme'!r}): {example}"
        )
    if not parts.hostname:
        raise ValueError(f"backend.url={url!r} has no host: {example}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(
            f"backend.url={url!r} is a base URL: no query, fragment or credentials ({example})"
        )
    return url


def _host_port(parts: SplitResult) -> tuple[str, int]:
    return parts.hostname or "", parts.port or SCHEMES.get(parts.scheme, 80)


@functools.lru_cache(maxsize=64)  # every job of a study validates the same URL
def _addresses(host: str) -> tuple[str, ...]:
    """The IP addresses ``host`` resolves to (empty when it does not resolve)."""
    try:
        return (ipaddress.ip_address(host).compressed,)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return ()
    return tuple(str(info[4][0]) for info in infos)


def is_local(url: str) -> bool:
    """True when every address the host of ``url`` resolves to is a loopback address (a host that
    does not resolve is not local)."""
    addresses = _addresses(urlsplit(url).hostname or "")
    return bool(addresses) and all(
        ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses
    )


def check_reachable(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`UsageError` when no TCP connection to ``url``'s host and port opens within
    ``timeout_s`` (pre-flight, ``backend.launch=none``)."""
    host, port = _host_port(urlsplit(url))
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise UsageError(
            f"backend.url={url}: no server answers at {host}:{port} ({why}): start the server "
            "first, fix backend.url, or let llem start one (backend.launch=vllm|command)"
        ) from None
