"""Verifying the repository's producer schemas against what a schema registry has registered.

For each schema of the contracts folder: the compatibility level of its subject is enforced against
the registered versions (the latest one, or all of them for a ``*_TRANSITIVE`` level), and the
consumer-aware check runs against the latest version. The registry I/O stays with the caller; this
module decides.

Pure logic; no Airflow, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from airflow_mesh.contracts.avro_compat import (
    CompatibilityLevel,
    InvalidSchemaError,
    check_compatibility,
)
from airflow_mesh.contracts.consumers import check_consumer_reads
from airflow_mesh.contracts.repository import FieldRead, SchemaContract

__all__ = ["RegisteredVersion", "SubjectVerdict", "render_report", "verify_contract", "versions_to_check"]


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered version of a subject.

    Attributes:
        version: Its version number in the registry.
        schema: Its schema text.
    """

    version: int
    schema: str


@dataclass(frozen=True)
class SubjectVerdict:
    """The outcome of verifying one producer schema.

    Attributes:
        contract: The schema verified.
        level: The subject's compatibility level.
        latest_version: The subject's latest registered version, None when it has none.
        problems: Every reason the schema may not be registered, one line each.
    """

    contract: SchemaContract
    level: CompatibilityLevel
    latest_version: int | None
    problems: tuple[str, ...]

    @property
    def subject(self) -> str:
        """The subject, ``<topic>-<role>``."""
        return self.contract.subject

    @property
    def passed(self) -> bool:
        """Whether the schema may be registered."""
        return not self.problems


def versions_to_check(level: CompatibilityLevel, versions: Sequence[int]) -> list[int]:
    """The registered versions a verification needs.

    Args:
        level: The subject's level.
        versions: The subject's version numbers, oldest first.

    Returns:
        Every version for a ``*_TRANSITIVE`` level, else only the latest (the consumer-aware check
        needs it whatever the level, NONE included); nothing for a subject without versions.
    """
    return list(versions) if level.value.endswith("_TRANSITIVE") else list(versions[-1:])


def verify_contract(contract: SchemaContract, level: CompatibilityLevel, registered: Sequence[RegisteredVersion],
                    reads: Sequence[FieldRead]) -> SubjectVerdict:
    """Verify one producer schema against its subject's registered versions and its consumers.

    Args:
        contract: The repository's schema (the candidate).
        level: The compatibility level of its subject.
        registered: The versions :func:`versions_to_check` names, oldest first; empty for a new subject.
        reads: What consumers read of the contract's topic and role.

    Returns:
        The verdict, with every problem found: each incompatibility with a registered version (named
        by its registry version number), then each consumer the schema would break.
    """
    if not registered:
        return SubjectVerdict(contract, level, None, ())
    problems: list[str] = []
    try:
        for problem in check_compatibility(contract.text, [v.schema for v in registered], level):
            assert problem.version is not None  # check_compatibility numbers every problem's version from 1
            problems.append(replace(problem, version=registered[problem.version - 1].version).describe())
        problems += [str(item) for item in check_consumer_reads(contract.text, registered[-1].schema, reads)]
    except InvalidSchemaError as exc:  # a registered version the checker cannot parse
        problems.append(f"cannot check against the registered versions: {exc}")
    return SubjectVerdict(contract, level, registered[-1].version, tuple(problems))


def render_report(verdicts: Sequence[SubjectVerdict]) -> str:
    """A readable report of a verification: every failing subject with every problem.

    Args:
        verdicts: The verdicts, one per schema.

    Returns:
        A multi-line text; the first line counts the subjects that failed.
    """
    failed = [verdict for verdict in verdicts if not verdict.passed]
    lines = [f"{len(failed)} of {len(verdicts)} schemas break their contracts" if failed
             else f"every schema keeps its contracts ({len(verdicts)} checked)"]
    for verdict in failed:
        lines.append(f"{verdict.subject} ({verdict.contract.file}; level {verdict.level.value}, "
                     f"latest registered version {verdict.latest_version}):")
        lines += [f"  - {problem}" for problem in verdict.problems]
    return "\n".join(lines)
