"""Errors a user can fix. The CLI prints them as one line and exits 2."""


class UserError(Exception):
    """Something the user can fix: names the thing, the bad value and the fix."""

    def __init__(self, what: str, value: object, fix: str):
        self.what, self.value, self.fix = what, value, fix
        super().__init__(f"{what} ({value}): {fix}")
