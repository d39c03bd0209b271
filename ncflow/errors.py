"""One exception type for problems a user can fix: the CLI prints its message as one line."""


class NcflowError(Exception):
    """Bad input or an impossible setting; the message names the problem and, where it can, the fix."""


def first_line(err: BaseException) -> str:
    """An error's first line: library messages (pyarrow, libpq) run over several."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
