"""The policy commands' one error: an expected failure whose message says what to do."""


class PolicyCommandError(Exception):
    """An expected failure of a policy command; the message says what to do."""
