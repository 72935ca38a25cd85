"""Where a Flink job's retained checkpoints are, and the record that ties a job's name to them.

Flink writes each completed checkpoint of job ``<jid>`` to ``<checkpoint dir>/<jid>/chk-<n>/``,
with a ``_metadata`` file once it is complete. A JobManager without high availability forgets its
jobs when it stops, but not their retained checkpoints: knowing the id a job's name last ran under
is enough to resume it from its latest one. That id is recorded beside the checkpoints, in
``<checkpoint dir>/_airflow_mesh/jobs/<quoted name>.json``. Pure logic: the Flink hook does the I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from urllib.parse import quote

RECORDS_FOLDER = "_airflow_mesh/jobs"
_CHECKPOINT = re.compile(r"^chk-(\d+)$")


@dataclass(frozen=True)
class JobRecord:
    """What airflow-mesh remembers of the job a name last ran as.

    Attributes:
        job_name: The job's name (``pipeline.name``).
        job_id: The id of the job last submitted or reconnected to under that name.
        checkpoint: The latest completed checkpoint seen, when one was (it may have been subsumed since).
        fingerprint: The digest of the declaration the job runs (``FlinkProgram.fingerprint``), when known.
    """

    job_name: str
    job_id: str
    checkpoint: str | None = None
    fingerprint: str | None = None

    def to_json(self) -> str:
        """The record as the JSON text stored beside the checkpoints."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobRecord:
        """Read a stored record.

        Raises:
            ValueError: the text is not such a record.
        """
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("job_id"), str):
            raise ValueError(f"not a job record: {text[:200]!r}")
        return cls(data.get("job_name", ""), data["job_id"], data.get("checkpoint"), data.get("fingerprint"))


def record_path(checkpoint_dir: str, job_name: str) -> str:
    """The record's path for a job name (any character of the name is safe in it).

    Args:
        checkpoint_dir: The cluster's checkpoint directory (a path, without scheme).
        job_name: The job's name.
    """
    return f"{checkpoint_dir.rstrip('/')}/{RECORDS_FOLDER}/{quote(job_name, safe='')}.json"


def latest_checkpoint(job_dir: str, entries: dict[str, bool]) -> str | None:
    """The latest complete checkpoint among a job's checkpoint folders.

    Args:
        job_dir: ``<checkpoint dir>/<jid>``.
        entries: Each ``chk-<n>`` folder name found there, mapped to whether it holds ``_metadata``.

    Returns:
        ``<job_dir>/chk-<n>`` with the highest ``n`` that is complete; None when none is.
    """
    complete = [(int(match.group(1)), name) for name, has_metadata in entries.items()
                if has_metadata and (match := _CHECKPOINT.match(name))]
    if not complete:
        return None
    return f"{job_dir.rstrip('/')}/{max(complete)[1]}"


def storage_path(uri: str) -> tuple[str, str]:
    """Split a Flink storage URI into a scheme pyarrow's filesystems understand and a path.

    Flink writes local paths as ``file:/a/b`` or ``file:///a/b``; other schemes (``s3://``,
    ``hdfs://``, ``gs://``) are kept as they are.

    Args:
        uri: e.g. ``file:/work/.stack/flink/checkpoints``.

    Returns:
        ``(uri for pyarrow, path)``, e.g. ``("file:///work/cp", "/work/cp")`` for ``file:/work/cp``.
    """
    if uri.startswith("file:"):
        path = "/" + uri.removeprefix("file:").lstrip("/")
        return f"file://{path}", path
    if uri.startswith("/"):
        return f"file://{uri}", uri
    return uri, uri.split("://", 1)[1] if "://" in uri else uri
