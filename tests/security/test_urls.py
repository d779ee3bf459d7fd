"""Instance URL validation: the allowlist, every kind of bad URL, sandbox mode, no network."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from app.security.urls import PROVIDER_DOMAINS, InstanceUrlError, validate_instance_url


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail the test if validation resolves a name or opens a connection."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def call(*args: object, **kwargs: object) -> Any:
            attempts.append(name)
            pytest.fail(f"validate_instance_url called socket.{name}{args!r}")

        return call

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "create_connection"):
        monkeypatch.setattr(socket, name, refuse(name))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    yield attempts
    assert attempts == []


REFUSED = [
    # IP literals, private and special addresses, numeric forms
    ("salesforce", "https://127.0.0.1"),
    ("salesforce", "https://10.0.0.5/services/data"),
    ("salesforce", "https://192.168.1.1"),
    ("salesforce", "https://169.254.169.254/latest/meta-data"),
    ("salesforce", "https://8.8.8.8"),
    ("hubspot", "https://[::1]"),
    ("hubspot", "https://[::ffff:127.0.0.1]"),
    ("hubspot", "https://[fd00::1]:443"),
    ("salesforce", "https://2130706433"),
    ("salesforce", "https://0x7f.1"),
    ("salesforce", "https://0x7f000001"),
    ("salesforce", "https://017700000001"),
    ("salesforce", "https://0177.0.0.1"),
    ("salesforce", "https://127.1"),
    # localhost and local names
    ("salesforce", "https://localhost"),
    ("salesforce", "https://localhost:8443"),
    ("salesforce", "https://api.localhost"),
    ("hubspot", "https://metadata.google.internal"),
    ("hubspot", "https://intranet"),
    # look-alikes
    ("salesforce", "https://x.salesforce.com.evil.example"),
    ("salesforce", "https://salesforce.com.evil"),
    ("salesforce", "https://evilsalesforce.com"),
    ("salesforce", "https://my-salesforce.com"),
    ("salesforce", "https://salesforce.co"),
    ("salesforce", "https://login.salesforce.com."),
    ("salesforce", "https://evil.example?.salesforce.com"),
    ("salesforce", "https://evil.example#.salesforce.com"),
    ("salesforce", "https://evil.example/.salesforce.com"),
    ("salesforce", "https://api.hubapi.com"),  # another provider's domain
    ("hubspot", "https://api.hubapi.com.evil.example"),
    ("hubspot", "https://hubspot.co"),
    ("hubspot", "https://nothubspot.com"),
    ("hubspot", "https://login.salesforce.com"),
    # scheme
    ("salesforce", "http://login.salesforce.com"),
    ("salesforce", "ftp://login.salesforce.com"),
    ("salesforce", "login.salesforce.com"),
    ("salesforce", "//login.salesforce.com"),
    ("salesforce", "javascript:alert(1)"),
    ("hubspot", "http://api.hubapi.com"),
    # userinfo
    ("salesforce", "https://user:pass@login.salesforce.com"),
    ("salesforce", "https://login.salesforce.com@evil.example"),
    ("salesforce", "https://@login.salesforce.com"),
    ("salesforce", "https://evil.example\\@login.salesforce.com"),
    # ports
    ("salesforce", "https://login.salesforce.com:8443"),
    ("salesforce", "https://login.salesforce.com:80"),
    ("salesforce", "https://login.salesforce.com:0"),
    ("salesforce", "https://login.salesforce.com:99999"),
    ("salesforce", "https://login.salesforce.com:443:443"),
    ("salesforce", "https://login.salesforce.com:x"),
    # non-ASCII and punycode (IDN homographs), encodings, odd characters
    ("salesforce", "https://login.salesforc\u0435.com"),  # Cyrillic "е"
    ("salesforce", "https://login.salesforce\uff0ecom"),  # fullwidth dot
    ("salesforce", "https://l\u043egin.salesforce.com"),  # Cyrillic "о" in a subdomain
    ("salesforce", "https://xn--salesforc-k6g.com"),
    ("salesforce", "https://xn--lgin-r1d.salesforce.com"),
    ("hubspot", "https://api.hub\u0430pi.com"),
    ("salesforce", "https://%6cogin.salesforce.com"),
    ("salesforce", "https://login_x.salesforce.com"),
    ("salesforce", "https://-login.salesforce.com"),
    ("salesforce", "https://login..salesforce.com"),
    ("salesforce", "https://login.salesforce.com\n.evil.example"),
    ("salesforce", "https://login.sales\tforce.com"),
    ("salesforce", " https://login.salesforce.com"),
    ("salesforce", "https://[::1"),
    ("salesforce", "https://"),
    ("salesforce", ""),
    ("salesforce", "https://" + "a" * 2100 + ".salesforce.com"),
    # providers
    ("fake", "https://login.salesforce.com"),  # fake only in sandbox
    ("dynamics", "https://acme.crm.dynamics.com"),
]


@pytest.mark.parametrize(("provider", "url"), REFUSED)
def test_given_an_unsafe_url_when_validated_outside_sandbox_then_it_is_refused_offline(
    provider: str, url: str
) -> None:
    with pytest.raises(InstanceUrlError) as caught:
        validate_instance_url(provider, url, sandbox=False)

    assert caught.value.reason
    assert str(caught.value) == caught.value.reason


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://10.1.2.3", "IP addresses are not allowed"),
        ("https://0x7f.1", "numeric hosts are not allowed"),
        ("https://localhost", "localhost"),
        ("https://salesforce.com.evil", "not a salesforce domain"),
        ("http://login.salesforce.com", "must use https"),
        ("https://u@login.salesforce.com", "user name or password"),
        ("https://login.salesforce.com:8443", "default port"),
        ("https://login.salesforc\u0435.com", "non-ASCII"),
        ("https://xn--salesforc-k6g.com", "punycode"),
    ],
)
def test_given_a_refused_url_when_validated_then_the_reason_says_why(url: str, reason: str) -> None:
    with pytest.raises(InstanceUrlError, match=reason):
        validate_instance_url("salesforce", url, sandbox=False)


@pytest.mark.parametrize(
    ("provider", "url", "normalised"),
    [
        ("salesforce", "https://login.salesforce.com", "https://login.salesforce.com"),
        ("salesforce", "https://test.salesforce.com/", "https://test.salesforce.com"),
        (
            "salesforce",
            "https://acme.my.salesforce.com/services/data/v61.0?q=1#top",
            "https://acme.my.salesforce.com",
        ),
        ("salesforce", "HTTPS://Acme.My.Salesforce.COM:443/", "https://acme.my.salesforce.com"),
        (
            "salesforce",
            "https://acme--uat.sandbox.my.salesforce.com",
            "https://acme--uat.sandbox.my.salesforce.com",
        ),
        ("salesforce", "https://acme.lightning.force.com", "https://acme.lightning.force.com"),
        ("salesforce", "https://na1.cloudforce.com", "https://na1.cloudforce.com"),
        ("salesforce", "https://acme.salesforce-sites.com", "https://acme.salesforce-sites.com"),
        ("salesforce", "https://salesforce.com", "https://salesforce.com"),
        ("hubspot", "https://api.hubapi.com", "https://api.hubapi.com"),
        ("hubspot", "https://api-eu1.hubapi.com/crm/v3/objects", "https://api-eu1.hubapi.com"),
        ("hubspot", "https://app.hubspot.com", "https://app.hubspot.com"),
    ],
)
def test_given_a_provider_url_when_validated_then_it_is_normalised(
    provider: str, url: str, normalised: str
) -> None:
    assert validate_instance_url(provider, url, sandbox=False) == normalised
    assert validate_instance_url(provider, url, sandbox=True) == normalised


@pytest.mark.parametrize(
    ("provider", "url", "normalised"),
    [
        ("salesforce", "http://127.0.0.1:8081/services", "http://127.0.0.1:8081"),
        ("salesforce", "http://localhost:8081", "http://localhost:8081"),
        ("salesforce", "https://localhost", "https://localhost"),
        ("salesforce", "http://sf-emulator:8080", "http://sf-emulator:8080"),
        ("salesforce", "http://api.emulator.test", "http://api.emulator.test"),
        (
            "salesforce",
            "https://acme.my.salesforce.com:8443",
            "https://acme.my.salesforce.com:8443",
        ),
        ("salesforce", "http://login.salesforce.com:80/", "http://login.salesforce.com"),
        ("hubspot", "http://10.0.0.7:9000", "http://10.0.0.7:9000"),
        ("hubspot", "http://192.168.1.20", "http://192.168.1.20"),
        ("hubspot", "http://[::1]:9000/", "http://[::1]:9000"),
        ("hubspot", "http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
        ("fake", "http://anything.example.org:1234/path?x=1", "http://anything.example.org:1234"),
        ("fake", "https://fake.example", "https://fake.example"),
    ],
)
def test_given_sandbox_mode_when_local_or_fake_urls_are_validated_then_they_are_allowed(
    provider: str, url: str, normalised: str
) -> None:
    assert validate_instance_url(provider, url, sandbox=True) == normalised


@pytest.mark.parametrize(
    ("provider", "url"),
    [
        ("fake", "http://user:pw@localhost:8080"),
        ("fake", "http://x.salesforce.com@evil.example"),
        ("salesforce", "http://admin@127.0.0.1:8081"),
        ("salesforce", "http://evil.example"),  # a public domain off the allowlist
        ("hubspot", "https://hubapi.com.evil.example"),
        ("salesforce", "ftp://localhost"),
        ("salesforce", "file:///etc/passwd"),
        ("salesforce", "http://2130706433"),  # ambiguous numeric form, even in sandbox
        ("salesforce", "http://0x7f.0.0.1"),
        ("fake", "http://f\u00e4ke.example"),
        ("dynamics", "http://localhost"),
    ],
)
def test_given_sandbox_mode_when_still_unsafe_urls_are_validated_then_they_are_refused(
    provider: str, url: str
) -> None:
    with pytest.raises(InstanceUrlError):
        validate_instance_url(provider, url, sandbox=True)


def test_the_allowlist_holds_only_lowercase_ascii_domains_for_every_provider() -> None:
    assert set(PROVIDER_DOMAINS) == {"salesforce", "hubspot", "fake"}
    for domains in PROVIDER_DOMAINS.values():
        for domain in domains:
            assert domain == domain.lower() and domain.isascii() and "." in domain
    for provider in ("salesforce", "hubspot"):
        for domain in PROVIDER_DOMAINS[provider]:
            assert validate_instance_url(provider, f"https://x.{domain}", sandbox=False)
