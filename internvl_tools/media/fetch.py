"""Fetching images from http(s) URLs safely: the SSRF guard and the capped, time-limited download.

Only reached when a :class:`~internvl_tools.media.policy.MediaPolicy` allows remote fetching. Every address a host
resolves to is checked (private, loopback, link-local, multicast, reserved, unspecified, IPv4-mapped / 6to4 /
Teredo / NAT64 forms, odd IPv4 spellings), redirects are followed by hand and re-checked at every hop, and the
whole fetch (lookup, connect, headers, body, every hop) runs against one deadline and a running cap on the raw
bytes. It imports only :mod:`~internvl_tools.media.policy`; ``images`` calls it, never the other way round.

>>> from internvl_tools.media.policy import MediaPolicy
>>> try:
...     check_url("http://169.254.169.254/latest/meta-data", MediaPolicy(allow_remote=True))
... except Exception as exc:
...     print(type(exc).__name__)
URLBlockedError
"""

from __future__ import annotations

import base64
import ipaddress
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from internvl_tools.errors import FetchError, RemoteFetchDisabledError, URLBlockedError
from internvl_tools.media.policy import MediaPolicy, redact_url

__all__ = ["check_url", "fetch_bytes"]

## DNS rebinding: the host is resolved once, every address is checked, and the request is sent to the checked IP
# (the URL's host is replaced by it) with the original Host header and, for https, the original name as SNI and
# for certificate verification (httpcore's "sni_hostname" extension). So a second, different DNS answer is never
# used. A fresh connection pool per hop keeps a TLS connection verified for one name from serving another, and
# httpcore is used without proxies, so no environment proxy resolves the name again on our behalf.

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _resolve_host(host: str, port: int) -> list[str]:
    """All addresses ``host`` resolves to (module-level so tests can substitute a fake resolver)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _blocked_reason(addr: _IPAddress) -> str | None:
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return _blocked_reason(addr.ipv4_mapped)
        embedded = [addr.sixtofour, *(addr.teredo or ())]
        if addr in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
        for inner in embedded:
            if inner is not None and _blocked_reason(inner):
                return f"embeds {inner}, which is {_blocked_reason(inner)}"
        if addr.is_site_local:
            return "site-local"
    for reason in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(addr, f"is_{reason}"):
            return reason.replace("_", "-")
    if not addr.is_global:
        return "not globally routable"
    return None


def _literal_ip(host: str) -> _IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # Legacy IPv4 spellings ("2130706433", "0x7f.1", "127.1") that resolvers still honour.
    if re.fullmatch(r"[0-9a-fA-Fx.]+", host) and re.search(r"[0-9]", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class _Target:
    url: Any  # httpx.URL as written (for joining redirects and for messages)
    pinned: Any  # httpx.URL with the host replaced by the checked IP
    host_header: str
    sni: str | None


def check_url(url: str, policy: MediaPolicy, *, deadline: float | None = None) -> _Target:
    """Refuse ``url`` unless the policy allows it and every address it resolves to is public; return the target.

    ``deadline`` (a :func:`time.monotonic` value) bounds the name lookup.
    """
    shown = redact_url(url)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as err:
        raise URLBlockedError(f"URL {shown!r} is malformed ({err}).") from err
    scheme = parsed.scheme.lower()
    if scheme not in policy.allowed_schemes:
        raise URLBlockedError(
            f"URL {shown!r} uses scheme {scheme!r}; only {', '.join(policy.allowed_schemes)} may be fetched."
        )
    if not policy.allow_remote:
        raise RemoteFetchDisabledError(
            f"URL {shown!r} was given but remote fetching is off. Download the image yourself, or pass "
            "policy=MediaPolicy(allow_remote=True) if this input is trusted to name public hosts."
        )
    host = parsed.raw_host.decode("ascii").rstrip(".").lower()
    if not host:
        raise URLBlockedError(f"URL {shown!r} has no host.")
    port = parsed.port or (443 if scheme == "https" else 80)
    if not policy.exempts(host, None) and (host == "localhost" or host.endswith(".localhost")):
        raise URLBlockedError(f"URL {shown!r} points at localhost; only public hosts may be fetched.")
    literal = _literal_ip(host.split("%", 1)[0])
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in _resolve_before(host, port, deadline)]
        except TimeoutError as err:
            raise FetchError(
                f"Resolving the host of {shown!r} timed out after {policy.timeout:g} s (MediaPolicy.timeout)."
            ) from err
        except (OSError, UnicodeError, ValueError) as err:
            raise FetchError(f"Could not resolve the host of {shown!r} ({err}); check the URL.") from err
        if not addresses:
            raise FetchError(f"The host of {shown!r} resolved to no addresses.")
    for addr in addresses:
        reason = _blocked_reason(addr)
        if reason and not policy.exempts(host, addr):
            raise URLBlockedError(
                f"URL {shown!r} resolves to {addr}, a {reason} address; fetching it could reach internal "
                "services. Only public hosts may be fetched (MediaPolicy.allow_private_hosts exempts trusted ones)."
            )
    pinned = parsed.copy_with(host=str(addresses[0]))
    return _Target(parsed, pinned, parsed.netloc.decode("ascii"), host if scheme == "https" else None)


def fetch_bytes(url: str, policy: MediaPolicy) -> bytes:
    """GET ``url`` under ``policy``: every hop re-checked, one deadline for everything, a running byte cap.

    ``policy.timeout`` bounds the whole fetch: name resolution, connecting, TLS, sending, the response headers
    and the body, summed over every redirect hop, even when a server sends one byte at a time. The body is read
    raw (never decompressed): a ``Content-Encoding`` other than ``identity`` is refused, since we asked for
    identity and a small compressed body can decode to gigabytes. Every failure is a :class:`FetchError` (or a
    :class:`~internvl_tools.errors.MediaPolicyError` for a refused address).
    """
    deadline = time.monotonic() + policy.timeout
    current = url
    for hop in range(policy.max_redirects + 1):
        target = check_url(current, policy, deadline=deadline)
        shown = redact_url(str(target.url))
        timed_out = f"Fetching {shown!r} timed out after {policy.timeout:g} s (MediaPolicy.timeout)."
        try:
            with (
                _pool(deadline) as pool,
                pool.stream(
                    "GET",
                    _httpcore_url(target.pinned),
                    headers=_request_headers(target),
                    extensions=_extensions(target),
                ) as resp,
            ):
                status = resp.status
                headers = _Headers(resp.headers)
                if status in _REDIRECTS:
                    current = _next_hop(target, headers, shown, hop, policy)
                    continue
                if not 200 <= status < 300:
                    reason = resp.extensions.get("reason_phrase", b"").decode("latin-1", "replace")
                    raise FetchError(
                        f"Fetching {shown!r} failed with HTTP {status} {reason}; check that the URL is right and "
                        "public."
                    )
                return _read_capped(resp, headers, shown, policy, deadline)
        except httpcore.TimeoutException as err:
            raise FetchError(timed_out) from err
        except _TRANSPORT_ERRORS as err:
            raise FetchError(f"Fetching {shown!r} failed: {type(err).__name__}: {err}.") from err
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# httpcore's own errors, plus what the socket, TLS or header decoding can raise underneath it.
_TRANSPORT_ERRORS = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ConnectionNotAvailable,
    httpcore.ProxyError,
    OSError,
    ValueError,
)


class _Headers:
    """Case-insensitive view of httpcore's raw header list; repeated headers are joined with ", "."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._values: dict[str, list[str]] = {}
        for key, value in raw:
            self._values.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1").strip())

    def get(self, name: str) -> str | None:
        values = self._values.get(name)
        return None if values is None else ", ".join(values)

    def all(self, name: str) -> list[str]:
        return self._values.get(name, [])


def _httpcore_url(url: httpx.URL) -> httpcore.URL:
    return httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path)


def _request_headers(target: _Target) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"Host", target.host_header.encode("ascii")),
        (b"Accept", b"image/*"),
        (b"Accept-Encoding", b"identity"),
        (b"User-Agent", b"internvl-tools"),
        (b"Connection", b"close"),
    ]
    if target.url.userinfo:  # credentials in the URL go to that URL's host only, never across a redirect
        username, password = target.url.username, target.url.password
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        headers.append((b"Authorization", f"Basic {token}".encode("ascii")))
    return headers


def _extensions(target: _Target) -> dict[str, Any]:
    extensions: dict[str, Any] = {}
    if target.sni:
        extensions["sni_hostname"] = target.sni
    return extensions


def _next_hop(target: _Target, headers: _Headers, shown: str, hop: int, policy: MediaPolicy) -> str:
    locations = headers.all("location")
    if len(locations) != 1 or not locations[0]:
        got = "no Location header" if not locations or not locations[0] else f"{len(locations)} Location headers"
        raise FetchError(f"{shown!r} answered with a redirect but {got}; the server is misconfigured.")
    if hop == policy.max_redirects:
        raise FetchError(f"{shown!r} redirected more than {policy.max_redirects} times (MediaPolicy.max_redirects).")
    try:
        return str(target.url.join(locations[0]))
    except (httpx.InvalidURL, ValueError, UnicodeError) as err:
        raise FetchError(f"{shown!r} redirected to a malformed URL ({err}).") from err


def _read_capped(resp: httpcore.Response, headers: _Headers, shown: str, policy: MediaPolicy, deadline: float) -> bytes:
    encoding = (headers.get("content-encoding") or "identity").lower()
    if encoding not in ("identity", ""):
        raise FetchError(
            f"{shown!r} was sent with Content-Encoding {encoding!r}, though only 'identity' was asked for; "
            "compressed bodies are refused, since they can decode to far more than MediaPolicy.max_bytes."
        )
    too_big = f"The body of {shown!r} is larger than MediaPolicy.max_bytes={policy.max_bytes}; refusing to download it."
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(too_big + f" (Content-Length: {int(declared)})")
    body = bytearray()
    for chunk in resp.iter_stream():  # raw bytes as they arrive: each read is bounded by the deadline
        body += chunk
        if len(body) > policy.max_bytes:
            raise FetchError(too_big)
        if time.monotonic() > deadline:
            raise FetchError(f"Fetching {shown!r} took longer than {policy.timeout:g} s (MediaPolicy.timeout).")
    return bytes(body)


# --- one deadline for the whole fetch --------------------------------------------------------------------------
# httpx's and httpcore's timeouts bound each socket operation, so a server that sends one byte every second keeps
# a fetch alive for ever. The network backend below gives every connect, read, write and TLS handshake only the
# time left before the fetch's deadline (httpcore's documented NetworkBackend interface), so the sum is bounded.


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner, self._deadline = inner, deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the fetch's deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: float) -> None:
        self._inner, self._deadline = httpcore.SyncBackend(), deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the fetch's deadline passed")
        left = left if timeout is None else min(timeout, left)
        stream = self._inner.connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise httpcore.UnsupportedProtocol("image fetches never use Unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self._deadline - time.monotonic())))


def _pool(deadline: float) -> httpcore.ConnectionPool:
    """A fresh pool per hop (a TLS connection verified for one name never serves another), no proxies, no retries."""
    return httpcore.ConnectionPool(max_connections=1, retries=0, network_backend=_DeadlineBackend(deadline))


def _resolve_before(host: str, port: int, deadline: float | None) -> list[str]:
    """:func:`_resolve_host`, given up on at ``deadline`` (a stuck resolver is left to finish in a daemon thread)."""
    if deadline is None:
        return _resolve_host(host, port)
    result: list[Any] = []
    done = threading.Event()

    def work() -> None:
        try:
            result.append(_resolve_host(host, port))
        except BaseException as err:  # handed to the caller below
            result.append(err)
        done.set()

    threading.Thread(target=work, name="internvl-resolve", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise TimeoutError(f"resolving {host!r} took too long")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]
