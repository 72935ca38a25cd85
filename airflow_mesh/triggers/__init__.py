"""Triggers for the deferrable sensors: they poll asynchronously and hold no worker slot."""
