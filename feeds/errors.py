"""The one exception a feed parser raises for input it cannot use.

Parsers catch the low-level errors of a malformed frame (KeyError, IndexError,
TypeError, ValueError, struct.error ...) and raise `FrameError` instead, so the
feed process can count the frame and skip it; it must never be raised for a bug.
"""

from __future__ import annotations


class FrameError(ValueError):
    """A frame (or REST snapshot body) is malformed, truncated or of an unexpected shape."""
