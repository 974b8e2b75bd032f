"""The one base class of errors that mean bad input rather than a bug.

Each module defines its own subclasses next to the code that raises them; the command layer
catches this base alone and prints the message as one line. Nothing here imports anything, so no
module has to load another just to name its exceptions.
"""


class MultVAEError(Exception):
    """Bad input (a file, a parameter, a missing stage output): the message names it and what was
    expected, and the command exits with status 1 without a traceback."""
