"""Exceptions emo raises on purpose; the CLI turns them into one-line messages and exit codes."""

from __future__ import annotations


class EmoError(Exception):
    """Base class of every error emo raises deliberately (never a bug)."""

    exit_code = 1


class UsageError(EmoError):
    """The user asked for something that cannot work: bad option, missing path, unknown name (exit 2)."""

    exit_code = 2


class MissingModelError(UsageError):
    """Pretrained weights or a model directory are not available offline; says what is expected where."""


class StoreError(EmoError):
    """A feature store cannot be opened, read or written as asked (corrupt, locked, incompatible)."""
