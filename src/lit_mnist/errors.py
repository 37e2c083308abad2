class UserError(Exception):
    """Something the user can fix (a path, a file, a flag, a value), told in one line."""
