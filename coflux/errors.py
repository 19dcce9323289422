"""One error tree for everything Coflux raises on purpose.

Every error a user can cause or meet carries a message written for them: what
went wrong and, where there is one, what to do next. The CLI catches
``CofluxError`` once at its edge and prints that message as one line; the
server maps it to an HTTP status once at its edge, and sends it as
``{"detail", "code"}``; every receiver (the HTTP client, the agent's WebSocket,
the execution process) turns that back into the same class with
:func:`from_wire`, so an error keeps its type across each boundary.

::

    CofluxError
    ├── ConfigError            bad .coflux.toml, variable or flag
    ├── InvalidInput           a name, argument or request that is malformed
    ├── NotFound               an unknown project, environment, target, run or step
    ├── Conflict               something that already exists or can't change
    ├── ServerUnreachable      no server answered at the configured URL
    ├── ServerError            the server answered with an unexpected failure
    ├── RepositoryError        a module that can't be found or imported
    ├── BlobError              a blob that is missing or whose content doesn't match its name
    ├── AssetError             an asset that can't be persisted or restored as asked
    ├── StorageFull            no space left to store what was sent
    ├── SerializationError     a value or error that can't be turned into bytes
    ├── ContextError           a context function called outside an execution
    └── ExecutionError         a step that ended without a value
        ├── RemoteError        a task's exception whose class can't be rebuilt here
        ├── Cancelled          the step was cancelled
        └── Abandoned          the agent running the step was lost
"""

from __future__ import annotations


class CofluxError(Exception):
    """Base of every error Coflux raises on purpose; ``str()`` is the user-facing message."""

    #: The HTTP status the server answers with when this error crosses its edge.
    status_code = 400
    #: A short machine-readable code, also sent by the server as ``code``.
    code = "error"


class ConfigError(CofluxError):
    code = "config"


class InvalidInput(CofluxError):
    status_code = 422
    code = "invalid"


class NotFound(CofluxError):
    status_code = 404
    code = "not_found"


class Unauthorized(CofluxError):
    status_code = 401
    code = "unauthorized"


class Forbidden(CofluxError):
    status_code = 403
    code = "forbidden"


class Conflict(CofluxError):
    status_code = 409
    code = "conflict"


class ServerUnreachable(CofluxError):
    code = "unreachable"


class ServerError(CofluxError):
    status_code = 502
    code = "server_error"


class RepositoryError(CofluxError):
    code = "repository"


class BlobError(CofluxError):
    status_code = 404
    code = "blob"


class AssetError(CofluxError):
    status_code = 400
    code = "asset"


class StorageFull(CofluxError):
    status_code = 507
    code = "storage_full"


class SerializationError(CofluxError):
    code = "serialization"


class ContextError(CofluxError):
    code = "context"


class ExecutionError(CofluxError):
    """A step ended without a value; ``execution_id`` names the execution."""

    code = "execution"

    def __init__(self, message: str, execution_id: str | None = None) -> None:
        super().__init__(message)
        self.execution_id = execution_id


class RemoteError(ExecutionError):
    """A task raised an exception whose class can't be rebuilt in this process.

    Carries the original qualified type name, message and traceback text.
    """

    code = "remote"

    def __init__(
        self, type_name: str, message: str, traceback: str = "", execution_id: str | None = None
    ) -> None:
        super().__init__(f"{type_name}: {message}", execution_id)
        self.type_name = type_name
        self.remote_message = message
        self.remote_traceback = traceback


class Cancelled(ExecutionError):
    code = "cancelled"


class Abandoned(ExecutionError):
    code = "abandoned"


#: Codes the server may send that name no class here (its own refusals, and
#: the catch-all for an unexpected failure): what the receiver makes of them.
_OTHER_CODES: dict[str, type[CofluxError]] = {
    "unavailable": ServerError,  # the database can't take writes now
    "elsewhere": ServerError,  # another server process orchestrates the project
    "lease_lost": ServerError,
    "internal": ServerError,  # the server's catch-all for an unexpected failure
}

#: A response without a code (an older server, a proxy): its HTTP status decides.
_BY_STATUS: dict[int, type[CofluxError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidInput,
    422: InvalidInput,
    507: StorageFull,
}


def _by_code() -> dict[str, type[CofluxError]]:
    classes: dict[str, type[CofluxError]] = {}
    pending: list[type[CofluxError]] = [CofluxError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        # RemoteError needs the remote type's name: it never crosses as a code.
        if cls.__module__ == __name__ and cls is not RemoteError:
            classes.setdefault(cls.code, cls)
    return {**_OTHER_CODES, **classes}


_BY_CODE = _by_code()


def from_wire(detail: object, code: object = None, status: int | None = None) -> CofluxError:
    """The error a ``{"detail", "code"}`` answer stands for, as the class that sent it.

    ``code`` decides; without a known one, the HTTP ``status`` (when there is
    one); else a plain ``CofluxError``. An unexpected failure of the server
    (a 5xx, or the catch-all's ``internal``) is a ``ServerError``.
    """
    message = str(detail) if detail else "the server gave no reason"
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None and status is not None:
        cls = _BY_STATUS.get(status, ServerError if status >= 500 else CofluxError)
    return (cls or CofluxError)(message)
