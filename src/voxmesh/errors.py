"""The one exception type users see: its message is a single sentence naming the
file or value at fault and what to do about it. The CLI prints it without a trace."""


class VoxmeshError(Exception):
    """A problem with the user's input, told in one sentence."""
