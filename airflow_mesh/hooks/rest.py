"""RestApiHook: what every REST hook of the provider shares (connection, session, TLS, bounded calls),
and the errors they all raise: RestApiError for an error answer, ServiceUnreachableError for none."""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from airflow.sdk import BaseHook
from typing_extensions import Self

from airflow_mesh.http import DEFAULT_TIMEOUT, CallPolicy, call_policy, plain_session


class RestApiError(Exception):
    """A REST API answered with an error (status 400 or more).

    Attributes:
        service: The service's name, e.g. ``Kafka Connect``.
        method: The HTTP method of the request.
        url: The URL of the request.
        status: The HTTP status code.
        message: The server's own message (from its error body, else the answer's text).
    """

    def __init__(self, service: str, method: str, url: str, status: int, message: str,
                 text: str | None = None) -> None:
        self.service = service
        self.method = method
        self.url = url
        self.status = status
        self.message = message
        super().__init__(text or f"{service} {method} {url} returned {status}: {message}")


class ServiceUnreachableError(RestApiError, requests.ConnectionError):
    """No answer from a REST API: connection refused, connect timeout, read timeout, dropped connection.

    Also a ``requests.ConnectionError`` (so code that catches ``requests.RequestException`` keeps
    working). ``status`` is 0. The message is one line naming the service, its address, the reason
    and the request, e.g. ``Kafka Connect at http://127.0.0.1:8083 is unreachable: connection
    refused (GET /connectors/x/status)``.

    Attributes:
        base_url: The service's address (scheme, host and port).
        reason: Why there was no answer, e.g. ``connection refused`` or ``no answer within 5s``.
        attempts: How many attempts were made.
        elapsed: Seconds the call took in all.
    """

    def __init__(self, service: str, method: str, url: str, reason: str, attempts: int = 1,
                 elapsed: float = 0.0) -> None:
        parts = urlsplit(url)
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self.reason = reason
        self.attempts = attempts
        self.elapsed = elapsed
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        tries = f"; {attempts} attempts in {elapsed:.1f}s" if attempts > 1 else ""
        text = f"{service} at {self.base_url} is unreachable: {reason} ({method} {path}{tries})"
        RestApiError.__init__(self, service, method, url, 0, reason, text)


def _verify_setting(value: Any) -> bool | str:
    """requests' ``verify`` for the extra ``verify``: a CA bundle's path, or true/false (also as text,
    as a form's text field gives them); empty or missing: True (the system's trusted CAs)."""
    if value is None or isinstance(value, bool):
        return True if value is None else value
    text = str(value).strip()
    return {"": True, "true": True, "false": False}.get(text.lower(), text)


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a requests/urllib3 error (its ``reason``s, causes and contexts)."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            args = getattr(exc, "args", ())
            inner = args[0] if args and isinstance(args[0], BaseException) else None
        inner = inner or exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    return exc


def unreachable_reason(exc: requests.RequestException, connect_timeout: float, read_timeout: float) -> tuple[str, bool]:
    """Why a request got no answer, in a few words, and whether the connection had been made.

    Args:
        exc: What requests raised.
        connect_timeout: The attempt's connect timeout (for the message).
        read_timeout: The attempt's read timeout (for the message).

    Returns:
        ``(reason, connected)``, e.g. ``("connection refused", False)``.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return f"no connection within {connect_timeout:g}s", False
    if isinstance(exc, requests.ReadTimeout):
        return f"no answer within {read_timeout:g}s", True
    root = _root_cause(exc)
    if isinstance(root, ConnectionRefusedError):
        return "connection refused", False
    text = str(root).split(": ", 1)[-1] if str(root) else type(root).__name__
    not_connected = "NewConnectionError" in repr(exc) or "NameResolutionError" in repr(exc)
    return text.strip() or type(root).__name__, not not_connected


class RestApiHook(BaseHook):
    """Base of the hooks that talk to one REST API through an Airflow connection.

    The connection's host, port (``default_port`` when empty) and schema (``http`` or ``https``)
    locate the endpoint; login/password, when set, are sent as basic auth. Extras: ``verify``
    (false, or the path of a CA bundle to check the server's certificate with; empty: the system's
    trusted CAs), ``cert`` and ``key`` (paths of a client certificate and its key, for mutual TLS;
    ``cert`` alone when it holds both); an extra that is null (a form's empty field) is not given.

    Every call is bounded: it ends within ``deadline`` seconds (default ``2 * timeout +
    connect_timeout``, 65 s with the defaults), retries included; see ``airflow_mesh.http.CallPolicy``
    for what is retried. No answer at all raises ServiceUnreachableError, naming ``service_name``
    and the URL; an error answer raises the subclass's own RestApiError (``_error_for``).

    Subclasses set the usual hook attributes, ``service_name``, ``default_port`` and
    ``retry_statuses``, and turn an error answer into their own typed error in ``_error_for``.

    Args:
        conn_id: The Airflow connection to use.
        timeout: Seconds to wait for an answer once connected (read timeout).
        retries: Attempts after the first (see CallPolicy for which failures are retried).
        connect_timeout: Seconds to wait for a connection (default: 5, at most ``timeout``).
        deadline: Seconds one call may take in all, retries included.
    """

    conn_name_attr: ClassVar[str]
    service_name: ClassVar[str] = "REST API"
    default_conn_name: ClassVar[str]
    default_port: ClassVar[int]
    retry_statuses: ClassVar[tuple[int, ...]] = (502, 503, 504)

    def __init__(self, conn_id: str, timeout: float = DEFAULT_TIMEOUT, retries: int = 5, *,
                 connect_timeout: float | None = None, deadline: float | None = None) -> None:
        super().__init__()
        setattr(self, self.conn_name_attr, conn_id)
        self.timeout = timeout
        self.retries = retries
        self.policy: CallPolicy = call_policy(timeout, retries, connect_timeout=connect_timeout,
                                              deadline=deadline, retry_statuses=self.retry_statuses)

    @classmethod
    def for_polling(cls, conn_id: str | None = None, call_timeout: float = 5.0) -> Self:
        """A hook for a poll loop (a sensor, a trigger): one call takes at most ``call_timeout`` s, retries included.

        The loop is the retry, so a call makes at most two attempts (connect timeout 2 s or less).

        Args:
            conn_id: The Airflow connection to use (default: the hook's default connection).
            call_timeout: Seconds one call may take in all.

        Returns:
            The hook.
        """
        return cls(conn_id or cls.default_conn_name, timeout=call_timeout, retries=1,
                   connect_timeout=min(2.0, call_timeout), deadline=call_timeout)

    @property
    def conn_id(self) -> str:
        """The id of the Airflow connection this hook uses."""
        return getattr(self, self.conn_name_attr)

    @cached_property
    def _conn(self) -> Any:
        return self.get_connection(self.conn_id)

    @cached_property
    def base_url(self) -> str:
        """The endpoint, e.g. ``http://127.0.0.1:8083``."""
        conn = self._conn
        return f"{conn.schema or 'http'}://{conn.host}:{conn.port or self.default_port}"

    @cached_property
    def session(self) -> requests.Session:
        """One session per hook: auth and TLS settings (retries are the hook's, see ``_send``)."""
        extra = self._conn.extra_dejson
        # The UI's connection form stores every extra field, null when left empty: empty is not given.
        if extra.get("key") and not extra.get("cert"):
            raise ValueError(f"connection {self.conn_id!r}: extra 'key' needs a 'cert'")
        session = plain_session()
        if self._conn.login:
            session.auth = (self._conn.login, self._conn.password or "")
        session.verify = _verify_setting(extra.get("verify"))
        if extra.get("cert"):
            session.cert = (extra["cert"], extra["key"]) if extra.get("key") else extra["cert"]
        return session

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request within the call's deadline, retrying as the policy allows.

        Args:
            method: The HTTP method.
            path: The path under ``base_url``.
            **kwargs: More arguments of ``requests.Session.request`` (``json``, ``params``, ...).

        Returns:
            The answer, of status below 400.

        Raises:
            ServiceUnreachableError: no answer (refused, timed out, dropped) after the allowed attempts.
            RestApiError: the subclass's error (``_error_for``) for an answer of 400 or more.
        """
        policy, url = self.policy, f"{self.base_url}{path}"
        started = time.monotonic()
        end = started + policy.deadline
        attempt = 0
        while True:
            left = end - time.monotonic()
            connect, read = min(policy.connect_timeout, left), min(policy.read_timeout, left)
            try:
                response = self.session.request(method, url, timeout=(connect, read), **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                reason, connected = unreachable_reason(exc, connect, read)
                # A TLS failure (certificate, protocol) would fail the same way again.
                retry = policy.retries_failure(method, connected) and not isinstance(exc, requests.exceptions.SSLError)
                failure: BaseException = ServiceUnreachableError(
                    self.service_name, method, url, reason, attempt + 1, time.monotonic() - started)
            else:
                if response.status_code < 400:
                    return response
                failure = self._error_for(response)
                retry = response.status_code in policy.retry_statuses
            pause = policy.pause(attempt)
            if not retry or attempt >= policy.retries or time.monotonic() + pause >= end:
                raise failure
            self.log.debug("%s: retrying in %.1fs after %s", self.service_name, pause, failure)
            time.sleep(pause)
            attempt += 1

    def _error_for(self, response: requests.Response) -> Exception:
        """The typed error (a RestApiError subclass) an answer of 400 or more stands for."""
        raise NotImplementedError
