"""Code identity: what a target can reach, hashed (docs/code-identity.md).

``hashing`` walks a target's code and the values it reaches, ``references``
reads the names its bytecode uses, and ``distributions`` names the versions
of the installed packages it imports."""
