"""Shared HTTP plumbing for the REST hooks: one session, timeouts, retries with backoff."""

from __future__ import annotations

from collections.abc import Collection

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT = 30.0


def retrying_session(
    *,
    retries: int = 5,
    backoff_factor: float = 0.5,
    status_forcelist: Collection[int] = (409, 500, 502, 503, 504),
) -> requests.Session:
    """A ``requests.Session`` that retries connection errors and the given statuses with backoff.

    Every method is retried: the REST APIs this provider calls answer a retried request the same
    way (idempotent PUT/DELETE/PATCH) or tell a duplicate apart (a re-run job gets a new id that the
    caller reconciles by name).

    Args:
        retries: Total attempts after the first one.
        backoff_factor: urllib3's exponential backoff factor, in seconds.
        status_forcelist: HTTP statuses that are retried.

    Returns:
        A configured session; the caller owns it.
    """
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff_factor,
        status_forcelist=tuple(status_forcelist),
        allowed_methods=None,
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
