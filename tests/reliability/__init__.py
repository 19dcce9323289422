"""The fault scenarios of docs/reliability.md, one module per kind of fault."""
