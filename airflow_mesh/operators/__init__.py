"""Operators: thin, they keep ids and state and leave all I/O to the hooks."""
