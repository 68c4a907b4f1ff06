from __future__ import annotations

import pytest

from edge_node.desensitise import desensitise
from edge_node.post_process import post_process


@pytest.mark.parametrize("text, expected, count", [
    ("mail jo.doe@example.co.uk now", "mail [email] now", 1),
    ("call +44 20 7946 0958 or 020-7946-0958", "call [phone] or [phone]", 2),
    ("card 4111 1111 1111 1111 please", "card [card] please", 1),
    ("platform 4 at 10:30 for 2 people", "platform 4 at 10:30 for 2 people", 0),
])
def test_personal_identifiers_are_masked(text, expected, count):
    assert desensitise(text) == (expected, count)


@pytest.mark.parametrize("text, expected", [
    ("  Go to the quay.  Then take the", "Go to the quay."),
    ("No full stop here", "No full stop here"),
    ("One. Two!", "One. Two!"),
])
def test_post_process_tidies_answers(text, expected):
    assert post_process(text) == expected
