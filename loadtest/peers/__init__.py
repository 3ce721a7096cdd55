"""Peer servers the harness runs as subprocesses (each file is also a standalone script)."""
