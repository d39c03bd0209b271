"""One exception type for problems a user can fix: the CLI prints its message as one line."""


class NcflowError(Exception):
    """Bad input or an impossible setting; the message names the problem and, where it can, the fix."""
