"""PII scrubbing: e-mail addresses, IP addresses and phone numbers become placeholders.

The patterns lean towards precision: a year, a price, a version number or a date must
never turn into a placeholder, so a phone number needs a shape that only phone numbers
have (a leading +country code, or the North American 3-3-4 digits with separators).

Addresses that point at no one stay by default, as datatrove keeps them: loopback, private,
link-local, shared and documentation-range IPs (127.0.0.1, 10.0.0.1, 192.0.2.7, 2001:db8::1)
and mail at the reserved example domains (RFC 2606, 6761). A software manual is full of them,
and a placeholder there teaches a model nothing but the placeholder.
"""

import ipaddress
import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

PII_KINDS = ("email", "ip", "phone")


class PiiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: bool = Field(True, description="replace e-mail addresses")
    ip: bool = Field(True, description="replace IPv4 and IPv6 addresses")
    phone: bool = Field(True, description="replace phone numbers (+country code, or North American 3-3-4)")
    keep_non_public_ips: bool = Field(True, description="keep loopback, private, link-local, shared and "
                                                        "documentation-range addresses (not globally reachable)")
    keep_example_domains: bool = Field(True, description="keep e-mail at example.com/.net/.org and the reserved "
                                                         "TLDs .example, .test, .invalid, .localhost")
    email_placeholder: str = "<EMAIL>"
    ip_placeholder: str = "<IP>"
    phone_placeholder: str = "<PHONE>"


# The lookbehind anchors a match at the start of a run of address characters and the possessive
# `++` never gives characters back: both keep the scan linear on long runs of dots and letters.
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]++@(?:[A-Za-z0-9-]++\.)+[A-Za-z]{2,}(?![\w-])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)")
# Candidates only; ipaddress decides. Clock times (12:30:45) and C++ scopes (std::map) fail it.
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:]|\.\w)")
_SEPARATOR = r"[-.\s]"
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    # +44 20 7946 0958, +49 (0)30 1234567
    rf"\+\d{{1,3}}{_SEPARATOR}?(?:\(\d{{1,4}}\){_SEPARATOR}?)?\d{{1,4}}(?:{_SEPARATOR}?\d{{2,4}}){{1,4}}"
    rf"|(?:1{_SEPARATOR})?(?:\([2-9]\d\d\)\s?|[2-9]\d\d{_SEPARATOR})[2-9]\d\d{_SEPARATOR}\d{{4}}"  # (415) 555-2671
    r")(?!\w|[-.]?\d)"
)
# an outline number or a four-part version ("version 1.2.0.4") reads like an IPv4 address
_VERSION_WORDS = re.compile(r"\b(?:version|release|section|build|ver|rev)\.?\s*$", re.IGNORECASE)


_EXAMPLE_DOMAIN = re.compile(r"@(?:[^@]*\.)?(?:example\.(?:com|net|org)|[^@.]+\.(?:example|test|invalid|localhost))$",
                             re.IGNORECASE)


def _is_email(match: re.Match, cfg: "PiiConfig") -> bool:
    return not (cfg.keep_example_domains and _EXAMPLE_DOMAIN.search(match.group()))


def _is_public(address: str, cfg: "PiiConfig") -> bool:
    return not cfg.keep_non_public_ips or ipaddress.ip_address(address).is_global


def _is_ipv4(match: re.Match, cfg: "PiiConfig") -> bool:
    if _VERSION_WORDS.search(match.string, max(0, match.start() - 12), match.start()):
        return False
    return _is_public(match.group(), cfg)


def _is_ipv6(match: re.Match, cfg: "PiiConfig") -> bool:
    try:
        ipaddress.IPv6Address(match.group())
    except ValueError:
        return False
    # "::2" is a Python slice and "a::b" a stray pair of words: ask for two groups, one of them long
    groups = [group for group in match.group().split(":") if group]
    return len(groups) >= 2 and max(map(len, groups)) >= 3 and _is_public(match.group(), cfg)


def _is_phone(match: re.Match, cfg: "PiiConfig") -> bool:
    return 7 <= sum(ch.isdigit() for ch in match.group()) <= 15  # E.164 allows at most 15 digits


# (kind, hints, pattern, accept). E-mail goes first: a domain may hold digits that the IP and phone
# patterns would half-take. A hint is a cheap necessary condition: it opens with a literal or a single
# character class, which the regex engine skips to at C speed, and most documents hold no address, so the
# full patterns (whose leading lookbehinds make a slow scan) rarely run. A phone number holds "+" and a digit,
# or ends in 3 digits, a separator and 4 digits.
_STEPS = [("email", [re.compile("@")], _EMAIL, _is_email),
          ("ip", [re.compile(r"\.\d{1,3}\.\d{1,3}\.")], _IPV4, _is_ipv4),
          ("ip", [re.compile(r":[0-9A-Fa-f]{0,4}:")], _IPV6, _is_ipv6),
          ("phone", [re.compile(r"\+\d"), re.compile(rf"\d\d\d{_SEPARATOR}\d{{4}}")], _PHONE, _is_phone)]


def _replace(text: str, pattern: re.Pattern, placeholder: str, accept: Callable[[re.Match, PiiConfig], bool],
             cfg: PiiConfig) -> tuple[str, int]:
    count = 0

    def substitute(match: re.Match) -> str:
        nonlocal count
        if not accept(match, cfg):
            return match.group()
        count += 1
        return placeholder

    return pattern.sub(substitute, text), count


def scrub_pii(text: str, cfg: PiiConfig) -> tuple[str, dict[str, int]]:
    """Text with PII replaced, and how many of each kind were replaced (`pii_email`, `pii_ip`, `pii_phone`)."""
    counts = dict.fromkeys((f"pii_{kind}" for kind in PII_KINDS), 0)
    for kind, hints, pattern, accept in _STEPS:
        if getattr(cfg, kind) and any(hint.search(text) for hint in hints):
            text, count = _replace(text, pattern, getattr(cfg, f"{kind}_placeholder"), accept, cfg)
            counts[f"pii_{kind}"] += count
    return text, counts
