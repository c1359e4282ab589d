"""Exceptions with messages meant for users: the CLI prints them without a traceback."""
from __future__ import annotations


class MedKLIPError(Exception):
    """Base class of every error medklip raises on purpose (bad input, missing files, ...)."""


class UnknownEntityError(MedKLIPError, KeyError):
    """An entity name that the knowledge base does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class KnowledgeBaseFileError(MedKLIPError):
    """A knowledge-base file that cannot be read or has the wrong shape."""


class TextEncoderNotFoundError(MedKLIPError):
    """A text encoder that is neither a local folder nor reachable on the hub."""


class CheckpointError(MedKLIPError):
    """A checkpoint or saved-model folder that cannot be loaded as asked."""


class ImageReadError(MedKLIPError):
    """An image file that cannot be read; the message names the file and the reason."""


class ImageTooLargeError(ImageReadError):
    """An image whose header announces more pixels than the budget allows (checked before decoding)."""
