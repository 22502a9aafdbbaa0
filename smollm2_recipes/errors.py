"""One exception type for mistakes a user can make: the CLI prints its message alone, no traceback."""


class UserError(Exception):
    """Bad input from the user (a value, a path, a missing package). The message says what is wrong
    and, where there is one, the command that fixes it."""
