"""SchemaRegistryHook against the stack's real schema registry (Apicurio Registry's Confluent API)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Iterator

import pytest

from airflow_mesh.contracts.avro_compat import CompatibilityLevel
from airflow_mesh.hooks.schema_registry import (
    IncompatibleSchemaError,
    RegistryInvalidSchemaError,
    SchemaNotFoundError,
    SchemaRegistryHook,
    SubjectNotFoundError,
    VersionNotFoundError,
)

V1 = json.dumps({"type": "record", "name": "Order", "namespace": "test", "fields": [
    {"name": "id", "type": "long"}]})
V2 = json.dumps({"type": "record", "name": "Order", "namespace": "test", "fields": [
    {"name": "id", "type": "long"}, {"name": "note", "type": ["null", "string"], "default": None}]})
NO_DEFAULT = json.dumps({"type": "record", "name": "Order", "namespace": "test", "fields": [
    {"name": "id", "type": "long"}, {"name": "amount", "type": "string"}]})


def purge(hook: SchemaRegistryHook, subject: str) -> None:
    """Delete a subject for good (soft delete first, as the API requires)."""
    for permanent in (False, True):
        with contextlib.suppress(SubjectNotFoundError):
            hook.delete_subject(subject, permanent=permanent)


def answering_registry() -> SchemaRegistryHook:
    """The hook of the stack's registry (connection ``schema_registry_default``); fails the test if it is down."""
    hook = SchemaRegistryHook()
    ok, message = hook.test_connection()
    if not ok:
        pytest.fail(f"the stack's schema registry does not answer ({message}): start it with `make up`")
    return hook


@pytest.fixture(scope="session")
def registry() -> SchemaRegistryHook:
    return answering_registry()


@pytest.fixture
def new_subject(registry: SchemaRegistryHook) -> Iterator[Callable[[str], str]]:
    """A factory of unique subject names, purged from the registry after the test."""
    created: list[str] = []

    def make(prefix: str = "test") -> str:
        subject = f"{prefix}-{uuid.uuid4().hex[:10]}-value"
        created.append(subject)
        return subject

    yield make
    for subject in created:
        purge(registry, subject)


def test_the_stack_runs_a_confluent_compatible_registry_at_backward(registry):
    assert registry.base_url.endswith("/apis/ccompat/v7")
    assert registry.get_compatibility_level() is CompatibilityLevel.BACKWARD  # Confluent's default


def test_register_read_back_and_look_up(registry, new_subject):
    subject = new_subject()
    first = registry.register_schema(subject, V1)
    assert registry.register_schema(subject, V1) == first  # the same schema again adds no version
    second = registry.register_schema(subject, V2)
    assert registry.list_versions(subject) == [1, 2]
    latest = registry.get_version(subject)
    assert (latest.subject, latest.version, latest.id, latest.schema_type) == (subject, 2, second, "AVRO")
    assert json.loads(latest.schema) == json.loads(V2)
    assert json.loads(registry.get_schema_by_id(first).schema) == json.loads(V1)
    assert registry.get_version(subject, 1).id == first
    assert registry.lookup_schema(subject, V1).version == 1
    assert registry.lookup_schema(subject, NO_DEFAULT) is None
    assert subject in registry.list_subjects()


def test_incompatible_registration_is_refused_with_the_registry_error(registry, new_subject):
    subject = new_subject()
    registry.register_schema(subject, V1)
    with pytest.raises(IncompatibleSchemaError) as refused:
        registry.register_schema(subject, NO_DEFAULT)  # BACKWARD: the new reader has no default for amount
    assert refused.value.status == 409 and refused.value.error_code == 409
    assert registry.list_versions(subject) == [1]


def test_compatibility_check_at_the_subject_level(registry, new_subject):
    subject = new_subject()
    registry.register_schema(subject, V1)
    assert registry.set_compatibility_level(CompatibilityLevel.FULL, subject) is CompatibilityLevel.FULL
    assert registry.get_compatibility_level(subject) is CompatibilityLevel.FULL
    assert registry.check_compatibility(subject, V2).is_compatible
    assert not registry.check_compatibility(subject, NO_DEFAULT).is_compatible


def test_invalid_schema_and_not_found_errors_carry_the_registry_codes(registry, new_subject):
    subject = new_subject()
    with pytest.raises(RegistryInvalidSchemaError) as invalid:
        registry.register_schema(subject, '{"type": "record", "name": "T", "fields": [{"name": "a", "type": "nope"}]}')
    assert invalid.value.error_code == 42201
    with pytest.raises(SubjectNotFoundError) as missing:
        registry.list_versions(subject)
    assert missing.value.error_code == 40401
    registry.register_schema(subject, V1)
    with pytest.raises(VersionNotFoundError):
        registry.get_version(subject, 7)
    with pytest.raises(SchemaNotFoundError):
        registry.get_schema_by_id(2**31 - 1)


def test_a_subject_not_registered_yet_has_the_global_level(registry, new_subject):
    assert registry.get_compatibility_level(new_subject()) is registry.get_compatibility_level()


def test_delete_soft_then_permanent(registry, new_subject):
    subject = new_subject()
    registry.register_schema(subject, V1)
    assert registry.delete_subject(subject) == [1]
    assert subject not in registry.list_subjects()
    assert subject in registry.list_subjects(deleted=True)
    assert registry.delete_subject(subject, permanent=True) == [1]
    assert subject not in registry.list_subjects(deleted=True)


def test_async_twins(registry, new_subject):
    subject = new_subject()
    schema_id = registry.register_schema(subject, V1)

    async def run() -> None:
        assert (await registry.aget_version(subject)).id == schema_id
        assert (await registry.aget_schema_by_id(schema_id)).id == schema_id
        assert await registry.alist_versions(subject) == [1]
        assert (await registry.acheck_compatibility(subject, V2)).is_compatible

    asyncio.run(run())
