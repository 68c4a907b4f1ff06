from __future__ import annotations

import pytest

from edge_node.serving.desensitise import desensitise, iban_valid, luhn_valid
from edge_node.serving.post_process import post_process


@pytest.mark.parametrize("text, expected, counts", [
    ("mail jo.doe@example.co.uk now", "mail [email] now", {"email": 1}),
    ("as root@localhost, please", "as [email], please", {"email": 1}),
    ("call +44 20 7946 0958 or 020-7946-0958", "call [phone] or [phone]", {"phone": 2}),
    ("call 415.555.0100 or (415) 555-0100.", "call [phone] or [phone].", {"phone": 2}),
    ("card 4111 1111 1111 1111 please", "card [card] please", {"card": 1}),
    ("card 4111.1111.1111.1111", "card [card]", {"card": 1}),
    ("card 4111-1111-1111-1112 (mistyped)", "card [number] (mistyped)", {"number": 1}),
    ("pay GB82 WEST 1234 5698 7654 32 and DE89370400440532013000 PLEASE",
     "pay [iban] and [iban] PLEASE", {"iban": 2}),
    ("from 192.168.10.42. or fe80::1ff:fe23:4567:890a or ::1", "from [ip]. or [ip] or [ip]", {"ip": 3}),
    ("ssn 123-45-6789, nino AB 12 34 56 C, dni 12345678Z, id 11010519491231002X",
     "ssn [national_id], nino [national_id], dni [national_id], id [national_id]", {"national_id": 4}),
    ("customer 12345678 and ue-98765432", "customer [number] and ue-[number]", {"number": 2}),
    ("platform 4 at 10:30 for 2 people", "platform 4 at 10:30 for 2 people", {}),
    ("on 2024-05-01 or 01/05/2024, 1990-2024, 12.50 or 3.14159265, 1,000,000 at 12:30:45",
     "on 2024-05-01 or 01/05/2024, 1990-2024, 12.50 or 3.14159265, 1,000,000 at 12:30:45", {}),
    ("999.1.1.1 is no address; AB12 is no IBAN; 12345678A fails its check letter",
     "999.1.1.1 is no address; AB12 is no IBAN; [number]A fails its check letter", {"number": 1}),
])
def test_personal_identifiers_are_masked(text, expected, counts):
    masked = desensitise(text)
    assert (masked.text, masked.counts) == (expected, counts)
    assert masked.total == sum(counts.values())


def test_counts_are_described_without_values():
    masked = desensitise("root@localhost, 415.555.0100, 020-7946-0958 and 4111 1111 1111 1111")
    assert masked.describe() == "email:1,card:1,phone:2"
    assert desensitise("nothing personal").describe() == ""


def test_desensitised_text_is_stable():
    once = desensitise("mail root@localhost, call 415.555.0100, IBAN DE89 3704 0044 0532 0130 00").text
    assert desensitise(once).text == once and desensitise(once).total == 0


def test_validators():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")
    assert not iban_valid("GB82") and not iban_valid("GB82-WEST-1234-5698-7654-32")


@pytest.mark.parametrize("text, expected", [
    ("  Go to the quay.  Then take the", "Go to the quay."),
    ("No full stop here", "No full stop here"),
    ("One. Two!", "One. Two!"),
])
def test_post_process_tidies_answers(text, expected):
    assert post_process(text) == expected
