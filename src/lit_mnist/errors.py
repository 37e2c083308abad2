"""The two kinds of mistake a user can make, each told in one line."""


class UserError(Exception):
    """Something the user can fix (a path, a file, a flag), said in words that fit the command
    that was run."""


class ParameterError(ValueError):
    """A value a class cannot work with, raised by the class that takes it and naming the parameter
    as the class spells it. The command line names the flag that set it instead."""

    def __init__(self, owner: object, parameter: str, problem: str) -> None:
        self.owner = owner if isinstance(owner, type) else type(owner)
        self.parameter, self.problem = parameter, problem
        super().__init__(f"{parameter} {problem}")
