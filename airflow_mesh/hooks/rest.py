"""RestApiHook: what every REST hook of the provider shares (connection, session, TLS, retries)."""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

import requests
from airflow.sdk import BaseHook

from airflow_mesh.http import DEFAULT_TIMEOUT, retrying_session


def _verify_setting(value: Any) -> bool | str:
    """requests' ``verify`` for the extra ``verify``: a CA bundle's path, or true/false (also as text,
    as a form's text field gives them); empty or missing: True (the system's trusted CAs)."""
    if value is None or isinstance(value, bool):
        return True if value is None else value
    text = str(value).strip()
    return {"": True, "true": True, "false": False}.get(text.lower(), text)


class RestApiHook(BaseHook):
    """Base of the hooks that talk to one REST API through an Airflow connection.

    The connection's host, port (``default_port`` when empty) and schema (``http`` or ``https``)
    locate the endpoint; login/password, when set, are sent as basic auth. Extras: ``verify``
    (false, or the path of a CA bundle to check the server's certificate with; empty: the system's
    trusted CAs), ``cert`` and ``key`` (paths of a client certificate and its key, for mutual TLS;
    ``cert`` alone when it holds both); an extra that is null (a form's empty field) is not given.
    Every call retries connection errors and the statuses of ``retry_statuses`` with backoff.

    Subclasses set the usual hook attributes, ``default_port`` and ``retry_statuses``, and turn an
    error answer into their own typed error in ``_error_for``.

    Args:
        conn_id: The Airflow connection to use.
        timeout: Seconds to wait for each HTTP answer.
        retries: Retries (with backoff) of connection errors and retried statuses.
    """

    default_port: ClassVar[int]
    retry_statuses: ClassVar[tuple[int, ...]] = (502, 503, 504)

    def __init__(self, conn_id: str, timeout: float = DEFAULT_TIMEOUT, retries: int = 5) -> None:
        super().__init__()
        setattr(self, self.conn_name_attr, conn_id)
        self.timeout = timeout
        self.retries = retries

    @property
    def conn_id(self) -> str:
        """The id of the Airflow connection this hook uses."""
        return getattr(self, self.conn_name_attr)

    @cached_property
    def _conn(self):
        return self.get_connection(self.conn_id)

    @cached_property
    def base_url(self) -> str:
        """The endpoint, e.g. ``http://127.0.0.1:8083``."""
        conn = self._conn
        return f"{conn.schema or 'http'}://{conn.host}:{conn.port or self.default_port}"

    @cached_property
    def session(self) -> requests.Session:
        """One session per hook: auth, TLS settings and the retry policy."""
        extra = self._conn.extra_dejson
        # The UI's connection form stores every extra field, null when left empty: empty is not given.
        if extra.get("key") and not extra.get("cert"):
            raise ValueError(f"connection {self.conn_id!r}: extra 'key' needs a 'cert'")
        session = retrying_session(retries=self.retries, status_forcelist=self.retry_statuses)
        if self._conn.login:
            session.auth = (self._conn.login, self._conn.password or "")
        session.verify = _verify_setting(extra.get("verify"))
        if extra.get("cert"):
            session.cert = (extra["cert"], extra["key"]) if extra.get("key") else extra["cert"]
        return session

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request (with the timeout and retries); raise ``_error_for`` on an error answer."""
        response = self.session.request(method, f"{self.base_url}{path}", timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            raise self._error_for(response)
        return response

    def _error_for(self, response: requests.Response) -> Exception:
        raise NotImplementedError
