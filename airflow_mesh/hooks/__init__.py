"""Hooks: each owns all I/O with one external system and holds no job state."""
