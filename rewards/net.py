"""Outbound calls to URLs that program admins configure (GIFQ's base URL, the alert webhook).

An admin key must not turn the engine into a proxy into its own network (server-side
request forgery). Outside development, a request to a private, loopback, link-local or
otherwise non-public address is refused unless ``REWARDS_OUTBOUND_ALLOWLIST`` names the
host or the address. The check runs when connecting, not only when a setting is saved:
``GuardedTransport`` resolves the name itself, checks every address it resolves to, and
connects to the checked address (keeping the name for ``Host`` and TLS), so a name that
resolves elsewhere a moment later (DNS rebinding) cannot slip through.

Development allows everything: the local GIFQ sandbox runs on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx

from rewards.settings import Environment, Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedDestination(httpx.UnsupportedProtocol):
    """The destination is not a public address and the allowlist does not name it.

    An ``UnsupportedProtocol``: a configuration problem, not worth retrying (the GIFQ
    client reports it as such, and the reward goes ``on_hold`` with the reason).
    """


@dataclass(frozen=True)
class OutboundPolicy:
    allow_private: bool = False
    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = field(default=())

    @classmethod
    def of(cls, settings: Settings) -> OutboundPolicy:
        hosts: set[str] = set()
        networks: list[Network] = []
        for entry in (settings.outbound_allowlist or "").split(","):
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.rstrip("."))
        return cls(
            allow_private=settings.env is Environment.development,
            hosts=frozenset(hosts),
            networks=tuple(networks),
        )

    def host_allowed(self, host: str) -> bool:
        return self.allow_private or host.lower().rstrip(".") in self.hosts

    def refusal(self, host: str, address: Address) -> str | None:
        """Why a connection to ``host`` at ``address`` is refused; None if it is allowed."""
        if self.host_allowed(host):
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address.is_global and not address.is_multicast:
            return None
        if any(address in network for network in self.networks):
            return None
        return (
            f"{host} resolves to {address}, a non-public address; "
            "name it in REWARDS_OUTBOUND_ALLOWLIST to allow it"
        )

    def check_url(self, url: str) -> str | None:
        """A saved URL's problem, when its host is an address literal (or ``localhost``).

        Names are checked when connecting: what they resolve to can change.
        """
        try:
            host = httpx.URL(url).host
        except httpx.InvalidURL as exc:
            return f"not a valid URL: {exc}"
        if host.lower().rstrip(".") == "localhost":
            return None if self.host_allowed(host) else self.refusal(host, _LOOPBACK)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        return self.refusal(host, address)


_LOOPBACK = ipaddress.ip_address("127.0.0.1")
_policy: OutboundPolicy | None = None


def configure(settings: Settings) -> OutboundPolicy:
    """Install this process's policy (``open_runtime`` does it)."""
    global _policy
    _policy = OutboundPolicy.of(settings)
    return _policy


def policy() -> OutboundPolicy:
    return _policy or configure(Settings())


async def resolve(host: str, port: int) -> list[Address]:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [address]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except OSError as exc:
        raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from exc
    found: list[Address] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


class GuardedTransport(httpx.AsyncBaseTransport):
    """Checks each request's destination against the process's ``OutboundPolicy``,
    then sends it to the checked address through ``inner``."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        rules = policy()
        host = request.url.host
        if not rules.host_allowed(host):
            port = request.url.port or (443 if request.url.scheme == "https" else 80)
            addresses = await resolve(host, port)
            for address in addresses:
                if reason := rules.refusal(host, address):
                    raise BlockedDestination(reason, request=request)
            if not addresses:
                raise httpx.ConnectError(f"{host} resolves to no address", request=request)
            pinned = str(addresses[0])
            if pinned != host:
                # Connect to the address just checked; Host and TLS keep the name.
                request.url = request.url.copy_with(host=pinned)
                if request.url.scheme == "https":
                    request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def guarded_transport(**options: Any) -> GuardedTransport:
    """A ``GuardedTransport`` over httpx's own (``options``: e.g. ``verify``)."""
    return GuardedTransport(httpx.AsyncHTTPTransport(**options))
