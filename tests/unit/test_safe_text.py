"""Text in messages and on the console: bounded, one line, no control characters, whatever the value."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from seldon_load.safe_text import MAX_SHOWN_CHARS, clip, printable, shown

LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary())
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner), st.dictionaries(st.text(), inner)),
                      max_leaves=60)
BOUND = MAX_SHOWN_CHARS + len("... (999999999 more characters)")


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_shown_is_one_bounded_printable_line(value):
    text = shown(value)
    assert len(text) <= BOUND and text.isprintable()


@given(st.text())
def test_printable_escapes_exactly_the_control_characters(text):
    out = printable(text)
    assert out.isprintable()
    if text.isprintable():
        assert out == text


def test_shown_does_no_more_work_than_it_shows():
    """A structure that stands for 9**9 leaves, shared as an alias bomb shares it: a whole repr
    would take minutes; the bounded one is immediate and short."""
    value: object = ["lol"] * 9
    for _ in range(8):
        value = [value] * 9
    text = shown(value)
    assert len(text) <= BOUND and "more" in text
    assert shown(10**5000) == "<int of 16610 bits>"


def test_clip_marks_what_it_cut():
    assert clip("abc") == "abc"
    assert clip("x" * 200, 10) == "xxxxxxxxxx... (190 more characters)"
    assert clip("a\nb\x1b[2J\u2028") == "a\\nb\\x1b[2J\\u2028"
