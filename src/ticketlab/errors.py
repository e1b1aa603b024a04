"""One exception type for every mistake a user can make.

The CLI prints a `TicketlabError` as a one-line message (no traceback); library callers can
catch it as a `ValueError`.
"""


class TicketlabError(ValueError):
    """A problem with the user's input, files or environment, with the way out in the text."""


class DataError(TicketlabError):
    """A data set is missing, corrupt or unknown."""


class SpecError(TicketlabError):
    """An experiment spec or option is invalid."""


class DivergedError(TicketlabError):
    """Training diverged: a NaN or infinite loss, or one far above its start (`training.loop.diverged`)."""
