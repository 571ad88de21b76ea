"""The error types whose messages are meant for a person: who sent the input, or who runs a training command."""


class InputError(ValueError):
    """Bad input, said in words a user can act on ("the text is empty", "this file is not an image").

    The app shows its message as it is; any other exception is an internal error: the user gets a
    generic message and the server logs the traceback. A ValueError, so callers that catch those
    keep working."""


class DataError(Exception):
    """The data a run needs is missing or unusable, said so that the person running it can act ("Fashion-MNIST not
    found in ...: apt-get install dataset-fashion-mnist"). Library code raises it; the command lines (daam.train,
    daam.compare) print its message and exit with status 2, with no traceback."""
