"""Errors of a selection (states, filters), and how a filter's text is quoted in them.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["AF_UNSPEC", "FilterError", "SelectionError", "printable", "quote_text"]

AF_UNSPEC = 0
#: Characters of a token shown in an error message; the pointer line's width around the token.
_QUOTE_LIMIT = 40
_POINTER_WIDTH = 100


class SelectionError(ValueError):
    """A bad state name or filter; the message is meant for the user."""


class FilterError(SelectionError):
    """
    A bad expression: the message, and which token it is about (index into ``tokens``;
    ``len(tokens)`` for the end), to point at it.
    """

    def __init__(self, message: str, tokens: Sequence[str], index: int) -> None:
        super().__init__(message)
        self.tokens = list(tokens)
        self.index = index

    def pointer(self) -> str:
        """
        The expression on one line and a line of ``^`` under the token (or its end), indented;
        a long expression is cut to the part around the token, and characters that do not
        print are shown escaped, as in the message.
        """
        shown = [printable(t) for t in self.tokens]
        line = " ".join(shown)
        if self.index < len(shown):
            start = len(" ".join(shown[: self.index])) + (1 if self.index > 0 else 0)
            width = max(len(shown[self.index]), 1)
        else:
            start, width = len(line) + (1 if line else 0), 1
        width = min(width, _POINTER_WIDTH // 2)
        if len(line) > _POINTER_WIDTH:
            left = max(0, start - _POINTER_WIDTH // 2)
            right = left + _POINTER_WIDTH
            head = "... " if left > 0 else ""
            line = head + line[left:right] + (" ..." if right < len(line) else "")
            start += len(head) - left
        return f"  {line}\n  {' ' * start}{'^' * width}"


def printable(text: str) -> str:
    """``text`` with each character that does not print (controls, non-UTF-8 bytes) escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def quote_text(text: str) -> str:
    """``text`` quoted for a message, as repr() does (one printable line), cut if long."""
    if len(text) > _QUOTE_LIMIT:
        return repr(text[:_QUOTE_LIMIT]) + "..."
    return repr(text)
