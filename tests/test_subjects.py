"""Subject validation and NATS wildcard matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from insane.subjects import SubjectError, matches, specificity, validate_pattern, validate_subject

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=6)
subject = st.lists(token, min_size=1, max_size=6).map(".".join)


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("a.b.c", "a.b.c", True),
        ("a.*.c", "a.b.c", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        (">", "a", True),
        ("*", "a.b", False),
        ("*.*", "a.b", True),
        ("a.b", "a.b.c", False),
        ("a.b.c", "a.b", False),
        ("orders.*.new", "orders.eu.new", True),
        ("orders.*.new", "orders.eu.cancel", False),
    ],
)
def test_matching(pattern: str, subject: str, expected: bool) -> None:
    assert matches(pattern, subject) is expected


@pytest.mark.parametrize("bad", ["", "a..b", ".a", "a.", "a b", "a.\tb", "a.*", "a.>"])
def test_invalid_publish_subjects_raise(bad: str) -> None:
    with pytest.raises(SubjectError):
        validate_subject(bad)


@pytest.mark.parametrize("bad", ["", "a..b", "a.>.b", "a b", "a.>.>"])
def test_invalid_patterns_raise(bad: str) -> None:
    with pytest.raises(SubjectError):
        validate_pattern(bad)


def test_wildcard_characters_inside_a_token_are_literal() -> None:
    assert validate_subject("a.b*") == "a.b*"
    assert matches("a.b*", "a.b*")
    assert not matches("a.b*", "a.bc")


def test_error_names_the_subject() -> None:
    with pytest.raises(SubjectError, match=r"a\.\.b"):
        validate_subject("a..b")


@given(subject)
def test_every_subject_matches_itself_and_full_wildcard(s: str) -> None:
    assert validate_subject(s) == s
    assert matches(s, s)
    assert matches(">", s)
    assert matches(".".join("*" for _ in s.split(".")), s)


@given(subject, st.data())
def test_star_replacing_one_token_still_matches(s: str, data: st.DataObject) -> None:
    toks = s.split(".")
    i = data.draw(st.integers(0, len(toks) - 1))
    pattern = ".".join(toks[:i] + ["*"] + toks[i + 1 :])
    assert matches(pattern, s)
    assert not matches(pattern + ".x", s)
    tail = ".".join(toks[:i] + [">"])
    assert matches(tail, s) is (len(toks) > i)


def test_specificity_orders_literal_star_tail() -> None:
    ranked = sorted(
        ["orders.>", "orders.*.new", "orders.eu.new", ">"], key=specificity, reverse=True
    )
    assert ranked == ["orders.eu.new", "orders.*.new", "orders.>", ">"]
