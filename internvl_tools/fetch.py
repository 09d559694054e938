"""Fetching images from http(s) URLs safely: the SSRF guard and the capped, time-limited download.

Only reached when a :class:`~internvl_tools.media.MediaPolicy` allows remote fetching. Every address a host resolves
to is checked (private, loopback, link-local, multicast, reserved, unspecified, IPv4-mapped / 6to4 / Teredo /
NAT64 forms, odd IPv4 spellings), redirects are followed by hand and re-checked at every hop, and the body is read
against one deadline and a running byte cap.

>>> from internvl_tools.media import MediaPolicy
>>> try:
...     check_url("http://169.254.169.254/latest/meta-data", MediaPolicy(allow_remote=True))
... except Exception as exc:
...     print(type(exc).__name__)
URLBlockedError
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

from internvl_tools.errors import FetchError, RemoteFetchDisabledError, URLBlockedError
from internvl_tools.media import MediaPolicy, _redact_url

__all__ = ["check_url", "fetch_bytes"]

## DNS rebinding: the host is resolved once, every address is checked, and the request is sent to the checked IP
# (the URL's host is replaced by it) with the original Host header and, for https, the original name as SNI and
# for certificate verification (httpcore's "sni_hostname" extension). So a second, different DNS answer is never
# used. A fresh client per hop keeps a TLS connection verified for one name from serving another, and
# trust_env=False keeps environment proxies from resolving the name again on our behalf.

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


def check_url(url: str, policy: MediaPolicy) -> _Target:
    """Refuse ``url`` unless the policy allows it and every address it resolves to is public; return the target."""
    import httpx

    shown = _redact_url(url)
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
    if not policy._exempt(host, None) and (host == "localhost" or host.endswith(".localhost")):
        raise URLBlockedError(f"URL {shown!r} points at localhost; only public hosts may be fetched.")
    literal = _literal_ip(host.split("%", 1)[0])
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in _resolve_host(host, port)]
        except (OSError, UnicodeError) as err:
            raise FetchError(f"Could not resolve the host of {shown!r} ({err}); check the URL.") from err
        if not addresses:
            raise FetchError(f"The host of {shown!r} resolved to no addresses.")
    for addr in addresses:
        reason = _blocked_reason(addr)
        if reason and not policy._exempt(host, addr):
            raise URLBlockedError(
                f"URL {shown!r} resolves to {addr}, a {reason} address; fetching it could reach internal "
                "services. Only public hosts may be fetched (MediaPolicy.allow_private_hosts exempts trusted ones)."
            )
    pinned = parsed.copy_with(host=str(addresses[0]))
    return _Target(parsed, pinned, parsed.netloc.decode("ascii"), host if scheme == "https" else None)


def fetch_bytes(url: str, policy: MediaPolicy) -> bytes:
    """GET ``url`` under ``policy``: redirects re-checked per hop, total deadline, running byte cap."""
    import httpx

    deadline = time.monotonic() + policy.timeout
    current = url
    for hop in range(policy.max_redirects + 1):
        target = check_url(current, policy)
        shown = _redact_url(str(target.url))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"Fetching {shown!r} timed out after {policy.timeout:g} s (MediaPolicy.timeout).")
        headers = {"Host": target.host_header, "Accept": "image/*", "Accept-Encoding": "identity",
                   "User-Agent": "internvl-tools"}  # fmt: skip
        extensions = {"sni_hostname": target.sni} if target.sni else {}
        try:
            with (
                httpx.Client(timeout=remaining, follow_redirects=False, trust_env=False) as client,
                client.stream("GET", target.pinned, headers=headers, extensions=extensions) as resp,
            ):
                if resp.is_redirect:
                    if hop == policy.max_redirects:
                        raise FetchError(
                            f"{shown!r} redirected more than {policy.max_redirects} times (MediaPolicy.max_redirects)."
                        )
                    current = str(target.url.join(resp.headers["location"]))
                    continue
                if not 200 <= resp.status_code < 300:
                    raise FetchError(
                        f"Fetching {shown!r} failed with HTTP {resp.status_code} {resp.reason_phrase}; "
                        "check that the URL is right and public."
                    )
                return _read_capped(resp, shown, policy, deadline)
        except httpx.TimeoutException as err:
            raise FetchError(f"Fetching {shown!r} timed out after {policy.timeout:g} s (MediaPolicy.timeout).") from err
        except httpx.HTTPError as err:
            raise FetchError(f"Fetching {shown!r} failed: {type(err).__name__}: {err}.") from err
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _read_capped(resp: Any, shown: str, policy: MediaPolicy, deadline: float) -> bytes:
    declared = resp.headers.get("content-length")
    too_big = f"The body of {shown!r} is larger than MediaPolicy.max_bytes={policy.max_bytes}; refusing to download it."
    if declared is not None and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(too_big + f" (Content-Length: {int(declared)})")
    body = bytearray()
    for chunk in resp.iter_bytes():
        body += chunk
        if len(body) > policy.max_bytes:
            raise FetchError(too_big)
        if time.monotonic() > deadline:  # a slow drip never trips the per-read timeout
            raise FetchError(f"Fetching {shown!r} took longer than {policy.timeout:g} s (MediaPolicy.timeout).")
    return bytes(body)
