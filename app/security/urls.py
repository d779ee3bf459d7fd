"""Validation of CRM instance URLs (the base URL the service sends credentials to).

A connection's instance URL decides where its OAuth tokens go, so outside
sandbox mode it must be ``https`` on a domain the provider owns
(:data:`PROVIDER_DOMAINS`), matched on label boundaries. Validation is purely
syntactic: no DNS lookup and no connection is ever made here.

Sandbox mode also allows ``http``, any port, IP literals, ``localhost`` and
local names (the emulators run there), and the ``fake`` provider takes any
well-formed URL. Userinfo (``user:pass@``) is refused in every mode.
"""

from __future__ import annotations

import ipaddress
import re
from types import MappingProxyType
from typing import Final
from urllib.parse import SplitResult, urlsplit

#: Domains each provider's instance URLs may be on: the domain itself or any subdomain.
#: Entries that are subdomains of others are listed to document the usual hosts.
PROVIDER_DOMAINS: Final[MappingProxyType[str, tuple[str, ...]]] = MappingProxyType(
    {
        "salesforce": (
            "salesforce.com",  # login., test., <domain>.my.salesforce.com
            "my.salesforce.com",
            "force.com",
            "lightning.force.com",
            "cloudforce.com",
            "salesforce-sites.com",
            "visualforce.com",
            "database.com",
        ),
        "hubspot": (
            "hubapi.com",  # api.hubapi.com, api-eu1.hubapi.com
            "hubspot.com",
        ),
        "fake": (),
    }
)

#: Names that only resolve locally: allowed in sandbox mode (emulators, containers).
SANDBOX_LOCAL_SUFFIXES: Final = ("localhost", "test", "internal", "local", "home.arpa")

_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
_MAX_URL_LENGTH: Final = 2048
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Parts a WHATWG URL parser or inet_aton reads as numbers: 2130706433, 0x7f, 017700000001.
_NUMERIC_PART = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_PORT = re.compile(r"^[0-9]{1,5}$")


class InstanceUrlError(ValueError):
    """The instance URL is refused; ``reason`` says why (safe to show to the admin)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def validate_instance_url(provider: str, url: str, *, sandbox: bool) -> str:
    """``url`` normalised to ``scheme://host[:port]``, or :class:`InstanceUrlError`.

    Path, query and fragment are dropped; the scheme and host are lower-cased;
    a default port is removed. Never resolves the host.
    """
    if provider not in PROVIDER_DOMAINS:
        raise InstanceUrlError(f"unknown provider {provider!r}")
    if provider == "fake" and not sandbox:
        raise InstanceUrlError("the fake provider is only available in sandbox mode")
    if provider == "fake" and isinstance(url, str) and url.startswith("fake:///"):
        # The fake CRM's file (integrations/fake): a local path, sandbox only.
        if "@" in url or "?" in url or "#" in url or not url.isascii():
            raise InstanceUrlError("a fake:/// URL is a plain absolute path")
        return url
    if not isinstance(url, str) or not url:
        raise InstanceUrlError("the URL is empty")
    if len(url) > _MAX_URL_LENGTH:
        raise InstanceUrlError(f"the URL is longer than {_MAX_URL_LENGTH} characters")
    if not url.isascii():
        raise InstanceUrlError("the URL contains non-ASCII characters (use the plain ASCII host)")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise InstanceUrlError("the URL contains whitespace or control characters")
    if "\\" in url:
        raise InstanceUrlError("the URL contains a backslash")

    try:
        parts = urlsplit(url)
    except ValueError:
        raise InstanceUrlError("the URL cannot be parsed") from None
    scheme = parts.scheme.lower()
    allowed_schemes = ("https", "http") if sandbox else ("https",)
    if scheme not in allowed_schemes:
        shown = f"{scheme}://" if scheme else "no scheme"
        raise InstanceUrlError(
            f"the URL must use https ({shown} given)"
            if not sandbox
            else f"the URL must use http or https ({shown} given)"
        )
    netloc = parts.netloc
    if not netloc:
        raise InstanceUrlError("the URL has no host")
    if "@" in netloc:
        raise InstanceUrlError("the URL must not contain a user name or password")

    host, port = _split_host_port(netloc)
    if port is not None and port != _DEFAULT_PORTS[scheme] and not sandbox:
        raise InstanceUrlError(f"the URL must use the default port ({port} given)")
    shown_host = _check_host(provider, host, sandbox=sandbox)
    return _unsplit(scheme, shown_host, port)


def _split_host_port(netloc: str) -> tuple[str, int | None]:
    """``host`` (brackets kept for IPv6) and the port, if any; syntax only."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end == -1:
            raise InstanceUrlError("the URL has an unterminated IPv6 address")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InstanceUrlError("the URL has characters after the IPv6 address")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_raw = netloc.partition(":")
        port_text = port_text_raw if colon else None
    if port_text is None or port_text == "":
        return host.lower(), None
    if not _PORT.match(port_text) or not 0 < int(port_text) < 65536:
        raise InstanceUrlError("the URL has an invalid port")
    return host.lower(), int(port_text)


def _check_host(provider: str, host: str, *, sandbox: bool) -> str:
    """The host as it goes into the normalised URL, or :class:`InstanceUrlError`."""
    if not host:
        raise InstanceUrlError("the URL has no host")

    if host.startswith("["):
        literal = host[1:-1]
        try:
            address = ipaddress.IPv6Address(literal)
        except ValueError:
            raise InstanceUrlError("the URL has an invalid IPv6 address") from None
        if not sandbox:
            raise InstanceUrlError("IP addresses are not allowed (use the provider's domain name)")
        return f"[{address.compressed}]"

    if host.endswith("."):
        raise InstanceUrlError("the host must not end with a dot")
    labels = host.split(".")
    if any(label == "" for label in labels):
        raise InstanceUrlError("the host has an empty label")

    if _looks_numeric(labels):
        try:
            address4 = ipaddress.IPv4Address(host)
        except ValueError:
            raise InstanceUrlError(
                "numeric hosts are not allowed (an IP address in decimal, hex or octal form)"
            ) from None
        if str(address4) != host:
            raise InstanceUrlError("numeric hosts must be a plain dotted IPv4 address")
        if not sandbox:
            raise InstanceUrlError("IP addresses are not allowed (use the provider's domain name)")
        return host

    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise InstanceUrlError(
            "the host is not a valid domain name (letters, digits and hyphens only)"
        )
    if any(label.startswith("xn--") for label in labels):
        raise InstanceUrlError("internationalised (punycode) host names are not allowed")

    is_local = _is_local_name(labels)
    if not sandbox and is_local:
        raise InstanceUrlError("localhost and local host names are not allowed")
    if sandbox and (provider == "fake" or is_local):
        return host
    if _on_allowlist(host, PROVIDER_DOMAINS[provider]):
        return host
    domains = ", ".join(PROVIDER_DOMAINS[provider])
    raise InstanceUrlError(f"the host is not a {provider} domain (allowed: {domains})")


def _looks_numeric(labels: list[str]) -> bool:
    # The WHATWG URL standard parses a host as IPv4 when its last label is a number
    # (decimal, 0x-hex or leading-zero octal); so do resolvers via inet_aton.
    return bool(_NUMERIC_PART.match(labels[-1]))


def _is_local_name(labels: list[str]) -> bool:
    if len(labels) == 1:
        return True
    host = ".".join(labels)
    return any(host.endswith("." + suffix) for suffix in SANDBOX_LOCAL_SUFFIXES)


def _on_allowlist(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == domain or host.endswith("." + domain) for domain in domains)


def _unsplit(scheme: str, host: str, port: int | None) -> str:
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return SplitResult(scheme, netloc, "", "", "").geturl()
