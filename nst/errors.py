"""The one exception type that means "the user gave us something we cannot use".

Raised anywhere in nst/ or doodle/ with a one-line, self-contained message; only the
command-line runners catch it, print ``error: <message>`` and exit with code 2.
"""


class UserError(Exception):
    """Bad input: a missing or unreadable file, a bad config value, an impossible layer name."""
