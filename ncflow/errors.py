"""One exception type for problems a user can fix: the CLI prints its message as one line."""


class NcflowError(Exception):
    """Bad input or an impossible setting; the message names the problem and, where it can, the fix."""

    retryable = False  # the same input fails the same way: a retry cannot help


class TransientError(NcflowError):
    """A fault outside the input (the network, a database that does not answer): worth another try."""

    retryable = True


def first_line(err: BaseException) -> str:
    """An error's first line: library messages (pyarrow, libpq) run over several."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
