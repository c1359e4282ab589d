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


class ConfigError(MedKLIPError):
    """A config file or override that does not fit the config's fields."""


class BenchmarkError(MedKLIPError):
    """A dataset folder or split file that cannot be used; the message says what to do."""


class RadGraphFormatError(MedKLIPError):
    """A RadGraph file that is not in the layout RadGraph writes."""


class UploadError(MedKLIPError):
    """A web request the page cannot answer; ``status`` is the HTTP status to send."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ImageReadError(MedKLIPError):
    """An image file that cannot be read; the message names the file and the reason."""


class ImageTooLargeError(ImageReadError):
    """An image whose header announces more pixels than the budget allows (checked before decoding)."""


class BackendError(MedKLIPError):
    """An inference backend that cannot run the exported graph on this machine; the message names
    the backend, its own reason and the backends to use instead."""
