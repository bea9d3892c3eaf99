"""Which network addresses news-monitor may connect to, enforced on the socket actually opened.

Sources and webhook URLs are written by people outside the operator's control. Unless the
operator allows private networks, a host that resolves to a loopback, private, link-local,
CGNAT, IPv4-mapped private or cloud-metadata address is refused. The check sits in the
connection layer (the resolver aiohttp connects through), so it applies after DNS resolution,
to the address connected to, on every redirect: no DNS-rebinding gap between check and connect.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from monitor.errors import BlockedAddressError

# Cloud metadata and host agents: AWS/GCP/Azure IMDS, AWS IPv6 IMDS, Alibaba, Azure WireServer.
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
             ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("168.63.129.16")}


def is_public(address: str) -> bool:
    """True when the address is a globally routable unicast address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return is_public(str(embedded))
    if ip in _METADATA or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return False                   # fec0::/10: deprecated, still routed inside some sites
    return ip.is_global


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that refuses hosts resolving to non-public addresses.

    aiohttp connects to exactly the addresses a resolver returns, so the address checked is
    the address connected to.
    """

    def __init__(self, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            refused = [r["host"] for r in results if not is_public(r["host"])]
            if refused:
                raise blocked(host, refused[0])
        return results

    async def close(self) -> None:
        await self._inner.close()


def blocked(host: str, address: str) -> BlockedAddressError:
    return BlockedAddressError(
        f"{host} resolves to {address}, a loopback, private, link-local or metadata address; "
        f"set allow_private_networks: true to allow it")


def check_literal(host: str, allow_private: bool) -> None:
    """A URL naming an IP address directly never meets the resolver: check it here."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not allow_private and not is_public(host.strip("[]")):
        raise blocked(host, host)
