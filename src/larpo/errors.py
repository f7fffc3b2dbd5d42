"""Errors the user can fix: the CLI prints them as one line and exits with code 2."""


class InputError(ValueError):
    """Bad input (a file, a config value, a model directory); the message names the problem."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
