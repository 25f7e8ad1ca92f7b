"""Which addresses dispatcher may connect to for a target: the guard against server-side request
forgery (a subscription whose URL points at the broker, a database or the cloud metadata service).

Targets are URLs that people typed, so by default only public addresses are allowed. The check
runs on the addresses a host resolves to, at connect time, and the connection then goes to the very
address that was checked: a name that resolves to a public address when the subscription is made
and to 127.0.0.1 later (DNS rebinding) is refused then. `host_refusal` is the static part (a
literal address or `localhost` in a URL), for config load and the API.

Pure apart from `NetworkGuard.resolve`, which asks the event loop's resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: one address to connect to: (family, sockaddr) as getaddrinfo gives it
Resolved = tuple[socket.AddressFamily, tuple[str, int] | tuple[str, int, int, int]]
#: a resolver: the addresses of (host, port)
Lookup = Callable[[str, int], Awaitable[list[Resolved]]]

#: what each rule forbids, as a reason says it
RULES = {
    "loopback": "a loopback address",
    "private": "a private address (RFC 1918 / RFC 4193)",
    "link-local": "a link-local address",
    "metadata": "a cloud metadata address",
    "cgnat": "a shared (CGNAT) address",
    "multicast": "a multicast address",
    "reserved": "a reserved address",
    "unspecified": "an unspecified address",
}
#: what `delivery.allow_private_networks: true` lets through; metadata, multicast, reserved and
#: unspecified addresses stay refused unless a CIDR in `delivery.allowed_networks` names them
PRIVATE_RULES = frozenset({"loopback", "private", "link-local", "cgnat"})
#: how to lift a refusal, for reasons and errors
HOW_TO_ALLOW = "allow it with delivery.allowed_networks (CIDRs) or delivery.allow_private_networks"
#: the same, for what allow_private_networks does not let through
HOW_TO_ALLOW_BY_CIDR = "allow it with a CIDR naming it in delivery.allowed_networks"

_TABLE: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), rule)
    for cidr, rule in (
        # IPv4; the first match wins, so the metadata hosts come before their ranges
        ("0.0.0.0/8", "unspecified"),  # "this network": 0.0.0.0 reaches the host itself
        ("10.0.0.0/8", "private"),
        ("100.100.100.200/32", "metadata"),  # Alibaba Cloud
        ("100.64.0.0/10", "cgnat"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.169.254/32", "metadata"),  # AWS, GCP, Azure, OpenStack, ...
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
        ("192.0.2.0/24", "reserved"),  # documentation
        ("192.88.99.0/24", "reserved"),  # 6to4 relays (deprecated)
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),  # benchmarking
        ("198.51.100.0/24", "reserved"),
        ("203.0.113.0/24", "reserved"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # and the broadcast address
        # IPv6 (IPv4-mapped, NAT64 and 6to4 addresses are judged by the IPv4 address inside)
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "private"),  # local-use NAT64 (inside ::/8)
        ("::/8", "reserved"),  # IPv4-compatible and the rest of the block
        ("100::/64", "reserved"),  # discard
        ("2001::/23", "reserved"),  # IETF protocol assignments, Teredo
        ("2001:db8::/32", "reserved"),  # documentation
        ("3fff::/20", "reserved"),  # documentation
        ("5f00::/16", "reserved"),  # SRv6 SIDs
        ("fd00:ec2::254/128", "metadata"),  # AWS over IPv6
        ("fc00::/7", "private"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "private"),  # site-local (deprecated)
        ("ff00::/8", "multicast"),
    )
)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class AddressRefused(OSError):
    """A target's host is, or resolves to, an address the guard does not allow. Its text names
    the address and the rule, never the URL (whose path and query may be a secret)."""

    def __init__(self, address: str, rule: str) -> None:
        self.address, self.rule = address, rule
        how = HOW_TO_ALLOW if rule in PRIVATE_RULES else HOW_TO_ALLOW_BY_CIDR
        super().__init__(f"{address} is {RULES[rule]}; {how}")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, NAT64 64:ff9b::/96, 6to4)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def classify(address: IPAddress) -> str | None:
    """The rule that forbids this address (a key of RULES), or None: a public address."""
    inner = embedded_ipv4(address)
    if inner is not None:
        return classify(inner)
    for network, rule in _TABLE:
        if address.version == network.version and address in network:
            return rule
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST:
        return "reserved"  # unassigned
    return None


def parse_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally, or None for a name. Takes the forms the
    resolver takes too (`127.1`, `0x7f.0.0.1`, `2130706433`), which a name check would miss."""
    host = host.strip("[]").split("%", 1)[0]  # an IPv6 zone says which interface, not where
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _is_localhost(host: str) -> bool:
    """RFC 6761: `localhost` and names under it are loopback, whatever DNS would say."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


@dataclass(frozen=True, slots=True)
class NetworkGuard:
    """The addresses a target may resolve to: public ones, those in `allowed` (CIDRs), and,
    with `allow_private`, the private kinds (PRIVATE_RULES)."""

    allowed: tuple[IPNetwork, ...] = ()
    allow_private: bool = False
    #: how names are resolved (default: `system_lookup`); tests give names addresses here
    lookup: Lookup | None = field(default=None, compare=False)

    @classmethod
    def of(
        cls,
        allowed_networks: Iterable[str],
        *,
        allow_private: bool = False,
        lookup: Lookup | None = None,
    ) -> NetworkGuard:
        """From CIDR strings (a bare address is a /32 or /128); ValueError on a bad one."""
        allowed = tuple(ipaddress.ip_network(cidr, strict=True) for cidr in allowed_networks)
        return cls(allowed, allow_private, lookup)

    def refusal(self, address: IPAddress) -> str | None:
        """The rule that refuses this address here, or None: it may be connected to."""
        rule = classify(address)
        if rule is None or (self.allow_private and rule in PRIVATE_RULES):
            return None
        inner = embedded_ipv4(address)
        for candidate in (address, inner) if inner is not None else (address,):
            if any(candidate.version == n.version and candidate in n for n in self.allowed):
                return None
        return rule

    def check(self, address: str) -> None:
        """Raise AddressRefused unless `address` (a resolved one, as text) is allowed."""
        rule = self.refusal(ipaddress.ip_address(address.split("%", 1)[0]))
        if rule is not None:
            raise AddressRefused(address, rule)

    def host_refusal(self, url: str) -> AddressRefused | None:
        """What the URL's host alone says, before any lookup: refused when it is a literal address
        or `localhost` that is not allowed. A name is judged when it is resolved (`resolve`)."""
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            return None  # not a URL: its own validation says so
        address = parse_address(host)
        if address is None and _is_localhost(host):
            address = ipaddress.IPv4Address("127.0.0.1")
        if address is None:
            return None
        rule = self.refusal(address)
        return None if rule is None else AddressRefused(str(address), rule)

    async def resolve(self, host: str, port: int) -> list[Resolved]:
        """Every address `host` resolves to for a TCP connection, all of them checked: raises
        AddressRefused when any is not allowed (a name with one private address among public
        ones is not a public name), socket.gaierror when it does not resolve."""
        if _is_localhost(host):  # never asked of DNS, which may say otherwise
            host = "127.0.0.1"
        try:  # a literal address needs no lookup (and no trip to the resolver's thread)
            literal = ipaddress.ip_address(host)
        except ValueError:
            resolved = await (self.lookup or system_lookup)(host, port)
        else:
            family = socket.AF_INET if literal.version == 4 else socket.AF_INET6
            resolved = [(family, (host, port) if literal.version == 4 else (host, port, 0, 0))]
        for _, sockaddr in resolved:
            self.check(sockaddr[0])
        if not resolved:
            raise socket.gaierror(socket.EAI_NONAME, "no IPv4 or IPv6 address")
        return resolved


async def system_lookup(host: str, port: int) -> list[Resolved]:
    """The host's IPv4 and IPv6 addresses from the event loop's resolver, each once, in order."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    resolved: dict[Resolved, None] = {}  # getaddrinfo may repeat an address
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            resolved[(family, cast(tuple[str, int], sockaddr))] = None
    return list(resolved)
