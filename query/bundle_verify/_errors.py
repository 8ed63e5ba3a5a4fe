"""The bundle's steps, errors that name the step and the place, and bundle text made safe to print."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import NoReturn

from ledger.core.errors import (
    DecodeError,
    ProvaultError,
    VerificationFailed,
)

STEPS: Mapping[int, str] = {
    0: "bundle format",
    1: "checkpoint",
    2: "inclusion proofs",
    3: "signatures and keys",
    4: "events and graph",
}


class MalformedBundle(DecodeError):
    """A bundle file or message that does not follow the bundle format."""

    reason = "malformed_bundle"


# --- printable text ------------------------------------------------------------------

_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories escaped: controls (C0, DEL, C1: newlines, tabs, ANSI escapes), format characters
(the bidi controls that reorder a line, zero-width spaces and joiners, the BOM, soft hyphens, tag
characters), lone surrogates, private-use and unassigned code points, and line / paragraph separators:
everything that moves the cursor, reorders or hides text, or looks like nothing."""


def printable(text: str) -> str:
    """``text`` safe to show on a terminal: each character of a :data:`_HIDDEN` category is written
    as a ``\\xNN`` / ``\\uNNNN`` / ``\\UNNNNNNNN`` escape; the rest is kept as is.

    A backslash is kept as is, so applying it twice changes nothing more."""
    if text.isprintable() and text.isascii():  # the common case, in C
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _HIDDEN else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


# --- located errors ------------------------------------------------------------------


def _located(cls: type[ProvaultError], step: int, place: str, message: str, hint: str | None) -> ProvaultError:
    place, message, hint = printable(place), printable(message), printable(hint) if hint is not None else None
    text = f"step {step} ({STEPS[step]}), {place}: {message}"
    try:
        err = cls(text, hint=hint)
    except TypeError:  # an error class with another constructor: keep the family
        err = VerificationFailed(text, hint=hint)
    err.step, err.step_name, err.place, err.detail = step, STEPS[step], place, message  # type: ignore[attr-defined]
    return err


def _fail(step: int, place: str, cls: type[ProvaultError], message: str, hint: str | None = None) -> NoReturn:
    raise _located(cls, step, place, message, hint)


@contextmanager
def _at(step: int, place: str) -> Iterator[None]:
    """Re-raise a core error from inside the block with the step and place in front."""
    try:
        yield
    except ProvaultError as e:
        if getattr(e, "step", None) is not None:
            raise
        raise _located(type(e), step, place, e.message, e.hint) from e
