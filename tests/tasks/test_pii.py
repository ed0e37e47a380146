"""PII scrubbing: addresses and phone numbers become placeholders; years, prices and versions stay."""


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.data.pii import PiiConfig, scrub_pii
from tests.conftest import SPAM_ASSASSIN

MAILS = SPAM_ASSASSIN


@pytest.mark.parametrize("text, expected, kind", [
    ("Write to bob.smith+news@example.co.uk.", "Write to <EMAIL>.", "email"),
    ("Ask ISHMAEL@Pequod.Nantucket.org about it", "Ask <EMAIL> about it", "email"),
    ("The server at 81.2.69.160 answered.", "The server at <IP> answered.", "ip"),
    ("Received: from mx1 ([66.187.233.211]) by", "Received: from mx1 ([<IP>]) by", "ip"),
    ("Reach 2a00:1450:4001:80b::200e or 1.1.1.1.", "Reach <IP> or <IP>.", "ip"),
    ("Call (415) 555-2671 now.", "Call <PHONE> now.", "phone"),
    ("Call 415.555.2671 or 1-800-555-1234.", "Call <PHONE> or <PHONE>.", "phone"),
    ("London: +44 20 7946 0958; Berlin: +49 (0)30 1234567.", "London: <PHONE>; Berlin: <PHONE>.", "phone"),
])
def test_pii_becomes_a_placeholder_and_is_counted(text, expected, kind):
    scrubbed, counts = scrub_pii(text, PiiConfig())
    assert scrubbed == expected
    assert counts[f"pii_{kind}"] == expected.count("<") and sum(counts.values()) == counts[f"pii_{kind}"]


@pytest.mark.parametrize("text", [
    "In 1861-1865 the war cost $1,234,567.89, or 3.5% of 1860's 2,000,000 dollars.",
    "Dated 2021-03-15 at 12:30:45, 10:30 p.m.; in 1790, 1791 and 1792; pages 123 456 7890.",
    "Python 3.11.7, version 1.2.3.4, ver. 10.0.0.1, build 2.0.0.1, section 4.1.2.3 and 8.11.6/8.11.6.",
    "a[::2], std::map, a::b and the ratio 3:2:1; ISBN 978-3-16-148410-0; tel. 555-1234; 98.6 degrees.",
    "He sold 150 200 3000 barrels of oil for 12.50 each; call 911; +5 points.",
])
def test_years_prices_versions_and_dates_are_left_alone(text):
    assert scrub_pii(text, PiiConfig()) == (text, {"pii_email": 0, "pii_ip": 0, "pii_phone": 0})


def test_each_kind_can_be_switched_off_and_placeholders_chosen():
    text = "bob@mail.org at 81.2.69.160 on (415) 555-2671"
    assert scrub_pii(text, PiiConfig(email=False))[0] == "bob@mail.org at <IP> on <PHONE>"
    assert scrub_pii(text, PiiConfig(ip=False, phone=False))[0] == "<EMAIL> at 81.2.69.160 on (415) 555-2671"
    custom = PiiConfig(email_placeholder="[email]", ip_placeholder="[ip]", phone_placeholder="[phone]")
    assert scrub_pii(text, custom)[0] == "[email] at [ip] on [phone]"


MANUAL = ("Start the server with `serve --host 127.0.0.1`, or bind 0.0.0.0 inside a container. On a LAN use "
          "192.168.1.20 or 10.0.0.5; a link-local peer is 169.254.10.2 or fe80::1ff:fe23:4567:890a; the examples "
          "use 192.0.2.1, 198.51.100.7, 203.0.113.9 and 2001:db8::8a2e:370:7334. Mail admin@example.com or "
          "root@build.test. The public mirror is 81.2.69.160; write to jane.doe@tokenmill.org.")


def test_addresses_that_point_at_no_one_are_kept_by_default():
    scrubbed, counts = scrub_pii(MANUAL, PiiConfig())
    assert scrubbed == MANUAL.replace("81.2.69.160", "<IP>").replace("jane.doe@tokenmill.org", "<EMAIL>")
    assert counts == {"pii_email": 1, "pii_ip": 1, "pii_phone": 0}


def test_keeping_them_is_configurable():
    strict = PiiConfig(keep_non_public_ips=False, keep_example_domains=False)
    scrubbed, counts = scrub_pii(MANUAL, strict)
    assert counts == {"pii_email": 3, "pii_ip": 11, "pii_phone": 0}
    assert "127.0.0.1" not in scrubbed and "admin@example.com" not in scrubbed


def test_a_real_mail_loses_its_addresses():
    mail = sorted((MAILS / "easy-ham-1").iterdir())[0].read_text(encoding="utf-8", errors="replace")
    scrubbed, counts = scrub_pii(mail, PiiConfig())
    assert counts["pii_email"] > 10 and counts["pii_ip"] >= 2  # public relays; 127.0.0.1 and 192.168.x stay
    assert "@spamassassin.taint.org" not in scrubbed and "127.0.0.1" in scrubbed  # loopback is no one's address
    assert "Thu, 22 Aug 2002 07:36:16 -0400" in scrubbed  # dates and times stay
    assert "(8.11.6/8.11.6)" in scrubbed  # so do version numbers


def test_spam_phone_numbers_are_found():
    mails = sorted((MAILS / "spam-1").iterdir())[:200]  # 8 in the fixture sample a clone without ../shared uses
    spam = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in mails)
    scrubbed, counts = scrub_pii(spam, PiiConfig())
    assert counts["pii_phone"] >= max(1, len(mails) // 20) and scrubbed.count("<PHONE>") == counts["pii_phone"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789 .-:+()@abcdefxyz\n"), max_size=80) | st.text())
def test_scrubbing_never_raises_and_counts_match_placeholders(text):
    text = text.replace("<", "")  # so that every placeholder in the output was put there by us
    scrubbed, counts = scrub_pii(text, PiiConfig())
    for kind, placeholder in (("email", "<EMAIL>"), ("ip", "<IP>"), ("phone", "<PHONE>")):
        assert scrubbed.count(placeholder) == counts[f"pii_{kind}"]
