"""One exception family; whatever reaches the user is one clear line."""


class CnidoctorError(Exception):
    """An error the user can act on; its message is printed as one line, without a traceback."""


class UsageError(CnidoctorError):
    """Bad arguments, inventory or spec: exit status 2."""


class TransportError(CnidoctorError):
    """A node could not be reached at all (no shell started, ssh refused, netns missing)."""
