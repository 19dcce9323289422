"""Plain records shared by every layer, one module per concern.

Nothing here does I/O or imports more than the standard library, so the SDK,
the client and the server all speak one vocabulary and ``import coflux`` stays
fast. The package imports nothing itself: import from the module that owns a
name (``from coflux.records.values import Value``)."""
