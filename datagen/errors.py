"""One exception root for errors a user can fix (DESIGN §1): the CLI prints it in one line, exit 2."""


class DatagenError(Exception):
    """A problem the user can fix; the message says what and where (file:line, field, flag)."""

    exit_code = 2


class TeacherUnavailable(DatagenError):
    """The endpoint stayed down (or refused us) after every retry."""

    exit_code = 1


class ClusterUnavailable(DatagenError):
    """The Dask scheduler named by --dask-address does not answer."""

    exit_code = 1
