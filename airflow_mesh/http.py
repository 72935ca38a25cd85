"""Shared HTTP plumbing for the REST hooks: the call policy (timeouts, retries, an overall deadline).

The hooks retry in their own loop (``RestApiHook._send``), not through urllib3's ``Retry``: urllib3
multiplies a timeout by its retries and adds an uncapped exponential backoff, so a call with
``timeout=5`` to a refused port took ~15 s and one to a server that never answers took minutes.
Here every call has one overall deadline that the attempts, their timeouts and the pauses between
them all fit into.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import requests

DEFAULT_TIMEOUT = 30.0  # seconds to wait for an answer once connected (read timeout)
DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds to wait for a TCP (and TLS) connection
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class CallPolicy:
    """How long one REST call may take, and what is retried within that time.

    A call makes at most ``1 + retries`` attempts, and the whole call (attempts, timeouts and the
    pauses between attempts) ends within ``deadline`` seconds: each attempt's connect and read
    timeouts are cut to what is left of the deadline, and no attempt starts once it is spent.
    Retried: a connection that could not be made (refused, connect timeout: the request never
    reached the server, so any method), a read timeout or a dropped connection only for idempotent
    methods (GET, HEAD, OPTIONS, PUT, DELETE: a POST or PATCH that timed out may have been applied),
    and the statuses of ``retry_statuses`` (answers that say the request was not processed).

    Attributes:
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for the answer once connected.
        retries: Attempts after the first one.
        deadline: Seconds the whole call may take; the worst case of one call.
        backoff: Pause before the first retry; doubled for each further one.
        backoff_max: The longest pause between two attempts.
        retry_statuses: HTTP statuses that are retried.
    """

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_TIMEOUT
    retries: int = 5
    deadline: float = 2 * DEFAULT_TIMEOUT
    backoff: float = 0.5
    backoff_max: float = 4.0
    retry_statuses: tuple[int, ...] = (502, 503, 504)

    def pause(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0 for the first).

        Args:
            attempt: The index of the attempt that just failed.

        Returns:
            ``backoff * 2**attempt``, at most ``backoff_max``.
        """
        return min(self.backoff * (2 ** attempt), self.backoff_max)

    def retries_failure(self, method: str, connected: bool) -> bool:
        """Whether a failed attempt without an answer may be retried.

        Args:
            method: The HTTP method.
            connected: Whether the connection was made (the request may have reached the server).

        Returns:
            True for any method when no connection was made; for idempotent methods only otherwise.
        """
        return not connected or method.upper() in IDEMPOTENT_METHODS


def call_policy(
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 5,
    *,
    connect_timeout: float | None = None,
    deadline: float | None = None,
    retry_statuses: Collection[int] = (502, 503, 504),
) -> CallPolicy:
    """The policy a hook built with these arguments follows.

    Args:
        timeout: The read timeout.
        retries: Attempts after the first.
        connect_timeout: The connect timeout; default ``min(DEFAULT_CONNECT_TIMEOUT, timeout)``.
        deadline: Seconds the whole call may take; default twice ``timeout`` plus the connect
            timeout (one slow answer, then shorter retries).
        retry_statuses: HTTP statuses that are retried.

    Returns:
        The policy.

    Raises:
        ValueError: a timeout or the deadline is not positive, or ``retries`` is negative.
    """
    connect = min(DEFAULT_CONNECT_TIMEOUT, timeout) if connect_timeout is None else connect_timeout
    total = 2 * timeout + connect if deadline is None else deadline
    if timeout <= 0 or connect <= 0 or total <= 0 or retries < 0:
        raise ValueError(f"timeouts and deadline must be positive and retries >= 0: timeout={timeout}, "
                         f"connect_timeout={connect}, deadline={total}, retries={retries}")
    return CallPolicy(connect, timeout, retries, total, retry_statuses=tuple(retry_statuses))


def plain_session() -> requests.Session:
    """A ``requests.Session`` that never retries by itself (the hook's call loop does).

    Returns:
        A session; the caller owns it.
    """
    return requests.Session()
