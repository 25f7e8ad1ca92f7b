"""The network guard: which addresses a target may reach, what the operator can allow, and
reasons that name the rule and the address but never the URL."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from dispatcher.netguard import (
    RULES,
    AddressRefused,
    NetworkGuard,
    Resolved,
    classify,
    parse_address,
    system_lookup,
)


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("2606:4700:4700::1111", None),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("172.32.0.1", None),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("fc00::1", "private"),
        ("fec0::1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "cgnat"),
        ("100.127.255.255", "cgnat"),
        ("100.128.0.1", None),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "reserved"),
        ("198.18.0.1", "reserved"),
        ("2001:db8::1", "reserved"),
        ("100::1", "reserved"),
        ("4000::1", "reserved"),  # outside global unicast
        ("::127.0.0.1", "reserved"),  # IPv4-compatible (deprecated)
        # IPv6 forms of an IPv4 address are judged by it
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", None),  # NAT64 of 8.8.8.8
        ("64:ff9b:1::1", "private"),  # local-use NAT64
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "metadata"),  # 6to4 of 169.254.169.254
        ("2002:808:808::1", None),
    ],
)
def test_classification(address: str, rule: str | None) -> None:
    assert classify(ipaddress.ip_address(address)) == rule


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        ("127.1", "127.0.0.1"),  # what the resolver makes of these forms
        ("0x7f.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("example.com", None),
        ("cafe", None),
        ("1.2.3.4.5", None),
        ("", None),
    ],
)
def test_literal_addresses_in_every_form(host: str, address: str | None) -> None:
    expected = ipaddress.ip_address(address) if address is not None else None
    assert parse_address(host) == expected


def test_by_default_only_public_addresses_pass() -> None:
    guard = NetworkGuard()
    guard.check("93.184.216.34")
    with pytest.raises(AddressRefused) as refused:
        guard.check("127.0.0.1")
    assert (refused.value.address, refused.value.rule) == ("127.0.0.1", "loopback")
    assert str(refused.value) == (
        "127.0.0.1 is a loopback address; allow it with delivery.allowed_networks (CIDRs) "
        "or delivery.allow_private_networks"
    )
    assert isinstance(refused.value, OSError)  # what connecting raises: callers handle it there
    with pytest.raises(AddressRefused) as metadata:  # allow_private_networks would not do
        guard.check("169.254.169.254")
    assert str(metadata.value) == (
        "169.254.169.254 is a cloud metadata address; "
        "allow it with a CIDR naming it in delivery.allowed_networks"
    )


def test_allowed_networks_allow_exactly_themselves() -> None:
    guard = NetworkGuard.of(["10.20.0.0/16", "fd00:1::/32", "127.0.0.1/32"])
    for allowed in ("10.20.3.4", "fd00:1::5", "127.0.0.1", "::ffff:10.20.0.1"):
        guard.check(allowed)
    for refused in ("10.21.0.1", "127.0.0.2", "fd00:2::1", "169.254.169.254", "::1"):
        with pytest.raises(AddressRefused):
            guard.check(refused)


def test_allowing_private_networks_keeps_metadata_and_the_odd_ones_refused() -> None:
    guard = NetworkGuard(allow_private=True)
    for allowed in ("127.0.0.1", "10.0.0.1", "192.168.1.1", "fd00::1", "169.254.1.1", "100.64.1.1"):
        guard.check(allowed)
    for address, rule in [
        ("169.254.169.254", "metadata"),
        ("::ffff:169.254.169.254", "metadata"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
    ]:
        with pytest.raises(AddressRefused) as refused:
            guard.check(address)
        assert refused.value.rule == rule
    # a CIDR that names it is the one way to allow a metadata address
    NetworkGuard.of(["169.254.169.254/32"], allow_private=True).check("169.254.169.254")


def test_a_network_with_host_bits_is_refused() -> None:
    with pytest.raises(ValueError, match="host bits"):
        NetworkGuard.of(["10.0.0.1/8"])


SECRET_URL = "https://user:hunter2-password@{host}/services/T0/B0/secret-path-token?sig=sig-value"


@pytest.mark.parametrize(
    ("host", "rule", "shown"),
    [
        ("127.0.0.1:8080", "loopback", "127.0.0.1"),
        ("[::1]", "loopback", "::1"),
        ("169.254.169.254", "metadata", "169.254.169.254"),
        ("2130706433", "loopback", "127.0.0.1"),
        ("localhost:5672", "loopback", "127.0.0.1"),
        ("api.localhost", "loopback", "127.0.0.1"),
        ("LOCALHOST.", "loopback", "127.0.0.1"),
        ("[::ffff:a00:1]", "private", "::ffff:a00:1"),
    ],
)
def test_a_literal_host_is_refused_before_any_lookup_without_the_secret(
    host: str, rule: str, shown: str
) -> None:
    refused = NetworkGuard().host_refusal(SECRET_URL.format(host=host))
    assert refused is not None
    assert (refused.rule, refused.address) == (rule, shown)
    text = str(refused)
    assert RULES[rule] in text
    for secret in ("hunter2", "secret-path", "sig-value", "services", "user"):
        assert secret not in text


@pytest.mark.parametrize(
    "url", ["https://hooks.slack.com/services/x", "http://8.8.8.8/", "not a url", "http://[::1"]
)
def test_names_public_addresses_and_nonsense_pass_the_static_check(url: str) -> None:
    assert NetworkGuard().host_refusal(url) is None  # names are judged when resolved


def test_an_allowed_literal_host_passes_the_static_check() -> None:
    guard = NetworkGuard.of(["127.0.0.0/8"])
    assert guard.host_refusal("http://127.0.0.1:9000/x") is None
    assert guard.host_refusal("http://localhost:9000/x") is None


def dns(table: dict[str, list[str]]) -> NetworkGuard:
    """A guard whose names resolve from `table`, allowing loopback."""

    async def lookup(host: str, port: int) -> list[Resolved]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, (a, port, 0, 0)) if ":" in a else (socket.AF_INET, (a, port))
            for a in table[host]
        ]

    return NetworkGuard.of(["127.0.0.0/8"], lookup=lookup)


async def test_a_name_is_refused_when_any_of_its_addresses_is() -> None:
    guard = dns({"mixed.test": ["127.0.0.1", "10.0.0.7"], "fine.test": ["127.0.0.2"]})
    with pytest.raises(AddressRefused) as refused:
        await guard.resolve("mixed.test", 443)
    assert (refused.value.address, refused.value.rule) == ("10.0.0.7", "private")
    assert await guard.resolve("fine.test", 443) == [(socket.AF_INET, ("127.0.0.2", 443))]


async def test_literals_and_localhost_are_not_looked_up() -> None:
    guard = dns({})  # any lookup fails
    assert await guard.resolve("127.0.0.1", 80) == [(socket.AF_INET, ("127.0.0.1", 80))]
    assert await guard.resolve("localhost", 80) == [(socket.AF_INET, ("127.0.0.1", 80))]
    with pytest.raises(AddressRefused):
        await guard.resolve("::1", 80)
    with pytest.raises(socket.gaierror):
        await guard.resolve("unknown.test", 80)


async def test_the_system_lookup_gives_each_address_once() -> None:
    # getaddrinfo answers a numeric host without DNS, once per socket type asked
    assert await system_lookup("127.0.0.1", 80) == [(socket.AF_INET, ("127.0.0.1", 80))]
