"""Which client sent a request: its address for the per-client limits.

Forwarded headers (``X-Forwarded-For``) are ignored unless the immediate peer is a trusted proxy named
with `trust_proxies` (app.py's ``--trusted-proxy``); then the address is the rightmost one in the header
that is not itself a trusted proxy. `forwarded_allow_ips` is the matching setting for uvicorn (which by
default believes ``X-Forwarded-For`` from 127.0.0.1: any local process could claim any address).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_trusted: tuple[_Network, ...] = ()


def trust_proxies(proxies: Iterable[str]) -> None:
    """Trust these addresses or networks ("10.0.0.5", "10.0.0.0/24", "::1") to forward client addresses;
    replaces the earlier list. Raises ValueError for something that is neither."""
    global _trusted
    networks = []
    for proxy in proxies:
        try:
            networks.append(ipaddress.ip_network(proxy.strip(), strict=False))
        except ValueError:
            raise ValueError(f"--trusted-proxy {proxy!r} is not an IP address or network") from None
    _trusted = tuple(networks)


def forwarded_allow_ips() -> str:
    """uvicorn's FORWARDED_ALLOW_IPS for the trusted proxies ("" trusts no one)."""
    return ",".join(str(n) for n in _trusted)


def is_trusted(address: str | None) -> bool:
    """Whether `address` is a trusted proxy."""
    try:
        ip = ipaddress.ip_address((address or "").strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in network for network in _trusted)


def client_address(request: Any) -> str:
    """The address `request` (a gr.Request or Starlette request) came from: the peer's, or behind trusted
    proxies the forwarded client's; "unknown" without one."""
    client = getattr(request, "client", None)
    peer = str(getattr(client, "host", None) or "unknown")
    if not is_trusted(peer):
        return peer
    headers = getattr(request, "headers", None) or {}
    forwarded = ",".join(v for k, v in _items(headers) if k.lower() == "x-forwarded-for")
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        host = _host(hop)
        if not is_trusted(host):
            return host
    return peer


def _items(headers: Any) -> list[tuple[str, str]]:
    multi = getattr(headers, "multi_items", None)
    return list(multi()) if callable(multi) else list(dict(headers).items())


def _host(hop: str) -> str:
    """The address of one X-Forwarded-For entry ("1.2.3.4", "1.2.3.4:5678", "[::1]:80", "::1")."""
    if hop.startswith("["):
        return hop[1:hop.find("]")] if "]" in hop else hop
    return hop.rsplit(":", 1)[0] if hop.count(":") == 1 else hop
