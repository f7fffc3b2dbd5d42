"""Errors the user can fix: the CLI prints them as one line and exits with code 2."""


class InputError(ValueError):
    """Bad input (a file, a config value, a model directory); the message names the problem."""
