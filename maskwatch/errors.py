"""Errors maskwatch raises for bad input. Each message says what arrived, what was expected and how to fix it."""


class MaskwatchError(Exception):
    """Base class: every error meant for a user (the CLI prints its message, no traceback)."""


class InputError(MaskwatchError, ValueError):
    """An image, video, folder, camera or data set that cannot be used."""


class ModelError(MaskwatchError):
    """A model file that is missing, corrupt or of the wrong shape."""
