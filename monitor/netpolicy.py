"""Which network addresses news-monitor may connect to, enforced on the socket actually opened.

Sources and webhook URLs are written by people outside the operator's control. Unless the
operator allows private networks, a host that resolves to a loopback, private, link-local,
CGNAT, IPv4-mapped private or cloud-metadata address is refused. The check sits in the
connection layer (an httpcore network backend), so it applies after DNS resolution, to the
address connected to, on every redirect: no DNS-rebinding gap between check and connect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any, Iterable

import httpcore

from monitor.errors import BlockedAddressError

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
             ipaddress.ip_address("100.100.100.200")}


def is_public(address: str) -> bool:
    """True when the address is a globally routable unicast address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return is_public(str(embedded))
    if ip in _METADATA or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    return ip.is_global


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses non-public addresses, connects to the checked one."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port)
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address,
                                                     socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        raise last_error or httpcore.ConnectError(f"cannot connect to {host}")

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if self._allow_private:
            return addresses
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            raise BlockedAddressError(
                f"{host} resolves to {refused[0]}, a loopback, private, link-local or metadata "
                f"address; set allow_private_networks: true to allow it")
        return addresses

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddressError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
