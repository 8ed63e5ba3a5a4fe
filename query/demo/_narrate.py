"""Plain-text narration: numbered steps, sentences, commands a user can paste, results.

No colour and no terminal tricks, so the output reads the same in a terminal,
a log file or a test.  Commands are quoted with :func:`shlex.quote` and
wrapped at argument boundaries with a trailing backslash, so a wrapped
command still pastes as one.
"""

from __future__ import annotations

import shlex
import textwrap
from collections.abc import Iterable, Sequence
from typing import TextIO

WIDTH = 116
INDENT = "   "
CONTINUATION = INDENT + "      "


def _groups(argv: Sequence[str]) -> list[str]:
    """Quoted words, an option kept together with its value (``--name x``)."""
    words = [shlex.quote(a) for a in argv]
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i].startswith("-") and i + 1 < len(words) and not words[i + 1].startswith("-"):
            out.append(f"{words[i]} {words[i + 1]}")
            i += 2
        else:
            out.append(words[i])
            i += 1
    return out


def command_lines(argv: Sequence[str], prompt: str = "$ ") -> list[str]:
    """``argv`` as a shell command, wrapped to :data:`WIDTH` with ``\\`` continuations."""
    lines: list[str] = []
    line = INDENT + prompt
    for group in _groups(argv):
        if line.strip() not in ("", prompt.strip()) and len(line) + 1 + len(group) + 2 > WIDTH:
            lines.append(line + " \\")
            line = CONTINUATION + group
        else:
            line = line + group if line.endswith(prompt) else f"{line} {group}"
    lines.append(line)
    return lines


class Narrator:
    """Writes the story to ``out`` line by line (flushed, so a pipe sees progress)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.current = (0, "starting")
        """The step being told: (number, text), for error messages."""

    def _write(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.out.write(line.rstrip() + "\n")
        self.out.flush()

    def title(self, text: str) -> None:
        self._write(textwrap.wrap(text, WIDTH))

    def step(self, number: int, total: int, text: str) -> None:
        self.current = (number, text)
        head = f"[{number}/{total}] "
        self._write(["", *textwrap.wrap(text, WIDTH, initial_indent=head, subsequent_indent=" " * len(head))])

    def say(self, text: str) -> None:
        self._write(textwrap.wrap(text, WIDTH, initial_indent=INDENT, subsequent_indent=INDENT))

    def command(self, argv: Sequence[str]) -> None:
        self._write(command_lines(argv))

    def show(self, text: str, indent: str = INDENT) -> None:
        """Pre-formatted lines (tables), indented, not wrapped."""
        self._write(indent + line if line.strip() else "" for line in text.rstrip("\n").splitlines())
