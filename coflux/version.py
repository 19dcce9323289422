"""The package version, importable without loading the SDK."""

__version__ = "0.1.0"
