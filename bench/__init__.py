"""Benchmarks: scripts that print JSON, run through a real server and agent on loopback."""
