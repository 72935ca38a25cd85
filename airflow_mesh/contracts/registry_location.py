"""Where a schema registry's API is, from the parts of a connection (no Airflow import: shared by
``SchemaRegistryHook`` and the backfill's Kafka target)."""

from __future__ import annotations

DEFAULT_PORT = 8081


def registry_url(scheme: str | None, host: str, port: int | None, api_path: str | None) -> str:
    """The API's root, e.g. ``http://127.0.0.1:8085/apis/ccompat/v7`` (Apicurio's Confluent API).

    Args:
        scheme: ``http`` (default) or ``https``.
        host: A host name or address (an IPv6 address is bracketed).
        port: The port (default 8081).
        api_path: The path the API lives under; empty for a Confluent registry.

    Returns:
        The URL, without a trailing slash.

    Raises:
        ValueError: ``api_path`` does not start with ``/``.
    """
    api_path = str(api_path or "")
    if api_path and not api_path.startswith("/"):
        raise ValueError(f"extra 'api_path' must start with '/', got {api_path!r}")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme or 'http'}://{host}:{port or DEFAULT_PORT}{api_path.rstrip('/')}"
