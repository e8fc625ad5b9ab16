"""The one error type for user-facing problems.

Anything raised as :class:`W2vtkError` is a user mistake or a bad input: the CLI prints its message
on one line (``error: ...``) and exits with status 1.  Any other exception is a bug in w2vtk and
keeps its traceback.
"""


class W2vtkError(Exception):
    """A problem the user can fix (bad input, missing file, wrong option); message is one line."""

    def __init__(self, message: str):
        # splitlines() also breaks at CR, U+2028 and the other line separators a hostile file name
        # or field could carry into the message
        super().__init__(" ".join(str(message).splitlines()))
