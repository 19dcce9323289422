"""One error tree for everything Coflux raises on purpose.

Every error a user can cause or meet carries a message written for them: what
went wrong and, where there is one, what to do next. The CLI catches
``CofluxError`` once at its edge and prints that message as one line; the
server maps it to an HTTP status once at its edge.

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
