"""The one error type whose message is meant for the person who sent the input."""


class InputError(ValueError):
    """Bad input, said in words a user can act on ("the text is empty", "this file is not an image").

    The app shows its message as it is; any other exception is an internal error: the user gets a
    generic message and the server logs the traceback. A ValueError, so callers that catch those
    keep working."""
