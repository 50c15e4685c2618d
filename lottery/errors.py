"""The one error type for user mistakes: the CLI prints its message and exits with code 2."""


class LotteryError(Exception):
    """A user mistake (bad config, wrong file, wrong architecture) with a message naming the fix."""
