"""Processors by name: the built-ins, those other packages register, and any ``module:attribute``.

A registered processor is a factory: a callable taking keyword parameters (what a DAG passes) and
returning a ``Processor``. Other teams ship theirs in their own package and register them under the
entry point group ``airflow_mesh.processors``::

    [project.entry-points."airflow_mesh.processors"]
    "payments.refunds" = "payments_mesh.processors:refunds"

A DAG then refers to ``payments.refunds`` by name; a reference of the form ``package.module:factory``
works without registration. Factories are imported only when used (or listed), so one broken
package does not break the others.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib.metadata import entry_points
from typing import Any

from airflow_mesh.processors.builtins import BUILTINS
from airflow_mesh.processors.model import Processor

ENTRY_POINT_GROUP = "airflow_mesh.processors"
PROCESSOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

ProcessorFactory = Callable[..., Processor]


class RegistryError(ValueError):
    """A processor cannot be registered, loaded or created (the message says which and why)."""


class UnknownProcessorError(RegistryError, LookupError):
    """No processor is registered under that name."""


def load_reference(reference: str) -> Any:
    """The object a ``package.module:attribute`` reference names.

    Raises:
        RegistryError: the reference is malformed, or its module or attribute cannot be loaded.
    """
    if not REFERENCE.match(reference):
        raise RegistryError(f"{reference!r} is not a 'package.module:attribute' reference")
    module_name, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"cannot load {reference!r}: {exc}") from exc
    return target


@dataclass(frozen=True)
class RegisteredProcessor:
    """A processor factory under its name.

    Attributes:
        name: The registered name.
        target: The factory, or a ``module:attribute`` reference to it (loaded on first use).
        origin: Where the registration came from, e.g. ``built-in`` or ``entry point of payments-mesh 1.2``.
    """

    name: str
    target: str | ProcessorFactory = field(compare=False)
    origin: str

    @cached_property
    def factory(self) -> ProcessorFactory:
        """The factory (importing it on first access).

        Raises:
            RegistryError: it cannot be loaded, or is not callable.
        """
        factory = load_reference(self.target) if isinstance(self.target, str) else self.target
        if not callable(factory):
            raise RegistryError(f"processor {self.name!r} ({self.origin}): {self.target!r} is not callable")
        return factory

    @property
    def description(self) -> str:
        """The first line of the factory's docstring."""
        return (inspect.getdoc(self.factory) or "").strip().split("\n", 1)[0]

    @property
    def parameters(self) -> str:
        """The factory's parameters with their defaults, e.g. ``input_topic, key=()``."""
        return ", ".join(name if parameter.default is inspect.Parameter.empty else f"{name}={parameter.default!r}"
                         for name, parameter in inspect.signature(self.factory).parameters.items())

    def create(self, params: Mapping[str, Any] | None = None) -> Processor:
        """Call the factory with ``params``.

        Args:
            params: The factory's keyword parameters.

        Returns:
            The declared processor (not yet checked: compile it, or ``plan`` it, to check it).

        Raises:
            RegistryError: the parameters do not fit the factory's signature, the factory raised a
                ValueError, or it returned something else than a Processor.
        """
        params = dict(params or {})
        try:
            inspect.signature(self.factory).bind(**params)
        except TypeError as exc:
            raise RegistryError(f"processor {self.name!r} takes ({self.parameters}): {exc}") from None
        try:
            processor = self.factory(**params)
        except ValueError as exc:
            raise RegistryError(f"processor {self.name!r}: {exc}") from exc
        if not isinstance(processor, Processor):
            raise RegistryError(f"processor {self.name!r} ({self.origin}) returned {type(processor).__name__}, "
                                "not a Processor")
        return processor


class ProcessorRegistry:
    """A set of named processor factories.

    ``default_registry()`` is the one DAGs use: the built-ins and every entry point of the group
    ``airflow_mesh.processors``.
    """

    def __init__(self) -> None:
        self._entries: dict[str, RegisteredProcessor] = {}

    def register(self, name: str, target: str | ProcessorFactory, origin: str = "registered") -> None:
        """Register a factory under a name.

        Args:
            name: Letters, digits, ``.``, ``_`` and ``-`` (e.g. ``payments.refunds``).
            target: The factory, or a ``module:attribute`` reference to it.
            origin: Where the registration comes from, for listings and errors.

        Raises:
            RegistryError: the name is malformed or already taken.
        """
        if not PROCESSOR_NAME.match(name):
            raise RegistryError(f"processor name {name!r} may hold only letters, digits, '.', '_' and '-'")
        if name in self._entries:
            raise RegistryError(f"processor {name!r} is registered twice: by {self._entries[name].origin} "
                                f"and by {origin}")
        self._entries[name] = RegisteredProcessor(name, target, origin)

    def register_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register every entry point of ``group``, under the entry point's name, without importing it.

        Raises:
            RegistryError: an entry point takes a name already registered.
        """
        for entry_point in entry_points(group=group):
            dist = f"{entry_point.dist.name} {entry_point.dist.version}" if entry_point.dist else "an unknown package"
            self.register(entry_point.name, entry_point.value, f"entry point of {dist}")

    def get(self, name: str) -> RegisteredProcessor:
        """The processor registered under ``name``.

        Raises:
            UnknownProcessorError: none is; the message lists those that are.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownProcessorError(f"no processor is registered as {name!r} (registered: "
                                        f"{', '.join(sorted(self._entries)) or 'none'})") from None

    def resolve(self, reference: str) -> RegisteredProcessor:
        """A registered name, or a ``package.module:factory`` reference (registered or not).

        Raises:
            UnknownProcessorError: a name that is not registered (a reference is checked when loaded).
        """
        if ":" in reference:
            return RegisteredProcessor(reference, reference, "module path")
        return self.get(reference)

    def __iter__(self) -> Iterator[RegisteredProcessor]:
        """The registered processors, by name."""
        return iter(sorted(self._entries.values(), key=lambda entry: entry.name))

    def __contains__(self, name: object) -> bool:
        return name in self._entries


@cache
def default_registry() -> ProcessorRegistry:
    """The built-ins plus every processor registered through the ``airflow_mesh.processors`` entry points.

    Raises:
        RegistryError: an entry point takes the name of a built-in or of another entry point.
    """
    registry = ProcessorRegistry()
    for name, reference in BUILTINS.items():
        registry.register(name, reference, "built-in")
    registry.register_entry_points()
    return registry


def create_processor(reference: str, params: Mapping[str, Any] | None = None) -> Processor:
    """The processor a DAG refers to: a registered name or a ``module:factory`` reference, with its parameters.

    Raises:
        UnknownProcessorError: no processor is registered under that name.
        RegistryError: it cannot be loaded, or the parameters do not fit.
    """
    return default_registry().resolve(reference).create(params)
