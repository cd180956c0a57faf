"""Errors a user can fix, for the whole repository: the trainer's CLI prints them as one line and exits 2, the
stack's config and the policy check report them the same way."""


class UserError(Exception):
    """Something the user can fix: names the thing, the bad value and the fix.

    `transient` is False here: the same call fails the same way until the configuration or the input
    changes. Subclasses for failures that can go away by themselves (an outage) set it True."""

    transient = False

    def __init__(self, what: str, value: object, fix: str):
        self.what, self.value, self.fix = what, value, fix
        super().__init__(f"{what} ({value}): {fix}")
