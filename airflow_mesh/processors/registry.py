"""Processors by name: the built-ins, those other packages register, and any ``module:attribute``.

A registered processor is a factory: a callable taking keyword parameters (what a DAG passes) and
returning a ``Processor``. Other teams ship theirs in their own package and register them under the
entry point group ``airflow_mesh.processors``, under a name in their own namespace (``team.name``)::

    [project.entry-points."airflow_mesh.processors"]
    "payments.refunds" = "payments_mesh.processors:refunds"

A DAG then refers to ``payments.refunds`` by name; a reference of the form ``package.module:factory``
works without registration.

No package can break another's processors, or the built-ins:

- Each entry point is registered on its own, without importing it. A factory is imported when it is
  first used (or listed); an import that fails in any way (``ImportError``, ``SyntaxError``, a
  ``RuntimeError`` raised by the module...) makes that one processor unusable, with a
  ``RegistryError`` naming the distribution, the entry point and the cause.
- Built-ins always keep their names: an entry point named like a built-in (``filter``) is refused,
  and the built-in stays what that name means.
- A name registered by two (or more) distributions is refused for all of them: which one a DAG would
  get must not depend on what else happens to be installed. Its lookup raises a ``RegistryError``
  naming every distribution that claims it. The cure is namespacing: ``payments.refunds`` and
  ``billing.refunds`` never clash. (Several entry points of one distribution under one name count
  once.)
- An entry point whose name is malformed is refused.

None of these is raised when the registry is built: each becomes a ``RegistryProblem`` in
``ProcessorRegistry.problems``, logged once (as a warning of this module's logger), shown by
``airflow-mesh processors list`` and failed by ``airflow-mesh processors validate``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from airflow_mesh.processors.builtins import BUILTINS
from airflow_mesh.processors.model import Processor

ENTRY_POINT_GROUP = "airflow_mesh.processors"
PROCESSOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
BUILT_IN = "built-in"

ProcessorFactory = Callable[..., Processor]

log = logging.getLogger(__name__)


class RegistryError(ValueError):
    """A processor cannot be registered, loaded or created (the message says which and why)."""


class UnknownProcessorError(RegistryError, LookupError):
    """No processor is registered under that name."""


@dataclass(frozen=True)
class RegistryProblem:
    """Something the registry refused or could not load; the processors it concerns are skipped.

    Attributes:
        name: The processor name concerned.
        message: What happened, naming the distribution(s) and entry point(s), and what to do.
    """

    name: str
    message: str

    def __str__(self) -> str:
        return self.message


def _cause(exc: BaseException) -> str:
    """``Type: message`` of an exception; a ``SyntaxError`` with its file and line."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}"


def load_reference(reference: str) -> Any:
    """The object a ``package.module:attribute`` reference names.

    Importing runs the module's code, so any exception it raises (not only an ``ImportError``) is
    reported as a ``RegistryError``.

    Args:
        reference: ``package.module:attribute``, the attribute possibly dotted.

    Returns:
        The object.

    Raises:
        RegistryError: the reference is malformed, or its module or attribute cannot be loaded
            (the message gives the exception's type and message).
    """
    if not REFERENCE.match(reference):
        raise RegistryError(f"{reference!r} is not a 'package.module:attribute' reference")
    module_name, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (Exception, SystemExit) as exc:  # a module's import runs arbitrary code
        raise RegistryError(f"cannot load {reference!r}: {_cause(exc)}") from exc
    return target


@dataclass(frozen=True)
class RegisteredProcessor:
    """A processor factory under its name.

    Attributes:
        name: The registered name.
        target: The factory, or a ``module:attribute`` reference to it (loaded on first use).
        origin: Where the registration came from, e.g. ``built-in`` or ``entry point of payments-mesh 1.2``.
        source: The registration in full, for errors, e.g. ``entry point 'payments.refunds =
            payments_mesh.processors:refunds' of payments-mesh 1.2`` (default: ``origin``).
        report: Called once with the problem when the factory cannot be loaded (the registry's record).
    """

    name: str
    target: str | ProcessorFactory = field(compare=False)
    origin: str
    source: str = field(default="", compare=False)
    report: Callable[[RegistryProblem], None] | None = field(default=None, compare=False, repr=False)

    @cached_property
    def _loaded(self) -> ProcessorFactory | RegistryError:
        """The factory, or why it cannot be loaded (imported once, whatever the outcome)."""
        try:
            factory = load_reference(self.target) if isinstance(self.target, str) else self.target
            if not callable(factory):
                raise RegistryError(f"{self.target!r} is not callable")
        except RegistryError as exc:
            error = RegistryError(f"processor {self.name!r} ({self.source or self.origin}) cannot be loaded: {exc}")
            error.__cause__ = exc.__cause__ or exc
            if self.report is not None:
                self.report(RegistryProblem(self.name, str(error)))
            return error
        return factory

    @property
    def factory(self) -> ProcessorFactory:
        """The factory (importing it on first access).

        Returns:
            The callable.

        Raises:
            RegistryError: it cannot be loaded, or is not callable; the message names the processor,
                where it was registered (distribution and entry point) and the cause.
        """
        loaded = self._loaded
        if isinstance(loaded, RegistryError):
            raise RegistryError(str(loaded)) from loaded.__cause__
        return loaded

    @property
    def description(self) -> str:
        """The first line of the factory's docstring.

        Raises:
            RegistryError: the factory cannot be loaded.
        """
        return (inspect.getdoc(self.factory) or "").strip().split("\n", 1)[0]

    @property
    def parameters(self) -> str:
        """The factory's parameters with their defaults, e.g. ``input_topic, key=()``.

        Raises:
            RegistryError: the factory cannot be loaded.
        """
        return ", ".join(name if parameter.default is inspect.Parameter.empty else f"{name}={parameter.default!r}"
                         for name, parameter in self.signature().parameters.items())

    def signature(self) -> inspect.Signature:
        """The factory's signature.

        Returns:
            The signature.

        Raises:
            RegistryError: the factory cannot be loaded, or Python cannot tell its signature.
        """
        factory = self.factory
        try:
            return inspect.signature(factory)
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"processor {self.name!r} ({self.source or self.origin}): {exc}") from exc

    def required_parameters(self) -> list[str]:
        """The factory's parameters that have no default (``*args``/``**kwargs`` excluded).

        Returns:
            Their names, in order.

        Raises:
            RegistryError: the factory cannot be loaded.
        """
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        return [name for name, parameter in self.signature().parameters.items()
                if parameter.default is inspect.Parameter.empty and parameter.kind not in variadic]

    def create(self, params: Mapping[str, Any] | None = None) -> Processor:
        """Call the factory with ``params``.

        Args:
            params: The factory's keyword parameters.

        Returns:
            The declared processor (not yet checked: compile it, or ``plan`` it, to check it).

        Raises:
            RegistryError: the factory cannot be loaded, the parameters do not fit its signature, it
                raised (a ValueError's message is kept as is), or it returned something else than a
                Processor.
        """
        params = dict(params or {})
        try:
            self.signature().bind(**params)
        except TypeError as exc:
            raise RegistryError(f"processor {self.name!r} takes ({self.parameters}): {exc}") from None
        try:
            processor = self.factory(**params)
        except ValueError as exc:
            raise RegistryError(f"processor {self.name!r}: {exc}") from exc
        except Exception as exc:  # a factory's bug: name the processor rather than pass on a bare KeyError
            raise RegistryError(f"processor {self.name!r} ({self.source or self.origin}) failed: "
                                f"{_cause(exc)}") from exc
        if not isinstance(processor, Processor):
            raise RegistryError(f"processor {self.name!r} ({self.origin}) returned {type(processor).__name__}, "
                                "not a Processor")
        return processor


def _distribution(entry_point: EntryPoint) -> tuple[str, str]:
    """The entry point's distribution: its normalized name (``payments-mesh``) and ``name version``."""
    dist = entry_point.dist
    if dist is None:
        return "", "an unknown distribution"
    name = re.sub(r"[-_.]+", "-", dist.name or "unknown").lower()
    return name, f"{dist.name} {dist.version}"


class ProcessorRegistry:
    """A set of named processor factories, and the problems met building it.

    ``default_registry()`` is the one DAGs use: the built-ins and every entry point of the group
    ``airflow_mesh.processors``, under the rules of this module's docstring.
    """

    def __init__(self) -> None:
        self._entries: dict[str, RegisteredProcessor] = {}
        self._refused: dict[str, str] = {}
        self._problems: list[RegistryProblem] = []

    @property
    def problems(self) -> tuple[RegistryProblem, ...]:
        """What was refused or could not be loaded so far, in the order met.

        Load problems appear once a factory has been loaded (``load_all`` loads every one).
        """
        return tuple(self._problems)

    def _report(self, problem: RegistryProblem) -> None:
        self._problems.append(problem)
        log.warning("airflow_mesh processor registry: %s", problem.message)

    def register(self, name: str, target: str | ProcessorFactory, origin: str = "registered",
                 source: str = "") -> None:
        """Register a factory under a name.

        Args:
            name: Letters, digits, ``.``, ``_`` and ``-`` (e.g. ``payments.refunds``).
            target: The factory, or a ``module:attribute`` reference to it.
            origin: Where the registration comes from, for listings and errors.
            source: The registration in full, for errors (default: ``origin``).

        Raises:
            RegistryError: the name is malformed or already taken.
        """
        if not PROCESSOR_NAME.match(name):
            raise RegistryError(f"processor name {name!r} may hold only letters, digits, '.', '_' and '-'")
        if name in self._entries:
            raise RegistryError(f"processor {name!r} is registered twice: by {self._entries[name].origin} "
                                f"and by {origin}")
        self._entries[name] = RegisteredProcessor(name, target, origin, source, self._report)

    def register_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register every entry point of ``group`` under its name, without importing it.

        Never raises: an entry point that takes a name already registered (a built-in's), a name
        two distributions claim, or a malformed name is skipped and recorded in ``problems``.

        Args:
            group: The entry point group.
        """
        try:
            found = list(entry_points(group=group))
        except Exception as exc:  # noqa: BLE001 - a distribution's unreadable metadata must not break the others
            self._report(RegistryProblem("", f"cannot read the entry points of {group!r}: {_cause(exc)}"))
            return
        claims: dict[str, dict[tuple[str, str], EntryPoint]] = {}
        for entry_point in found:
            dist_name, dist = _distribution(entry_point)
            name = entry_point.name
            source = f"entry point '{name} = {entry_point.value}' of {dist}"
            namespace = dist_name or "team"
            if not PROCESSOR_NAME.match(name):
                self._report(RegistryProblem(name, f"{source} is refused: a processor name may hold only letters, "
                                                   "digits, '.', '_' and '-'"))
            elif name in self._entries:
                taken = self._entries[name].origin
                owner = "a built-in's name" if taken == BUILT_IN else f"taken by {taken}"
                self._report(RegistryProblem(name, f"{source} is refused: {name!r} is {owner}, which always keeps "
                                                   f"it; register it under a namespaced name such as "
                                                   f"'{namespace}.{name}'"))
            else:
                claims.setdefault(name, {}).setdefault((dist_name or dist, entry_point.value), entry_point)
        for name, claimants in claims.items():
            if len(claimants) == 1:
                [entry_point] = claimants.values()
                dist = _distribution(entry_point)[1]
                self.register(name, entry_point.value, f"entry point of {dist}",
                              f"entry point '{name} = {entry_point.value}' of {dist}")
                continue
            listed = sorted(f"{_distribution(entry_point)[1]} ({entry_point.value!r})"
                            for entry_point in claimants.values())
            message = (f"processor {name!r} is registered by {len(listed)} distributions, so none of them gets it: "
                       f"{', '.join(listed[:-1])} and {listed[-1]}; each should register it under its own "
                       f"namespace, e.g. 'team.{name}'")
            self._refused[name] = message
            self._report(RegistryProblem(name, message))

    def get(self, name: str) -> RegisteredProcessor:
        """The processor registered under ``name`` (not yet loaded: its ``factory`` or ``create`` loads it).

        Args:
            name: The registered name.

        Returns:
            The registration.

        Raises:
            RegistryError: several distributions register that name (the message names them).
            UnknownProcessorError: none is; the message lists those that are.
        """
        if name in self._refused:
            raise RegistryError(self._refused[name])
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownProcessorError(f"no processor is registered as {name!r} (registered: "
                                        f"{', '.join(sorted(self._entries)) or 'none'})") from None

    def resolve(self, reference: str) -> RegisteredProcessor:
        """A registered name, or a ``package.module:factory`` reference (registered or not).

        Args:
            reference: A name or a ``package.module:factory`` reference.

        Returns:
            The registration (a reference's is made up on the spot).

        Raises:
            RegistryError: a name several distributions register.
            UnknownProcessorError: a name that is not registered (a reference is checked when loaded).
        """
        if ":" in reference:
            return RegisteredProcessor(reference, reference, "module path")
        return self.get(reference)

    def load_all(self) -> list[tuple[RegisteredProcessor, RegistryError | None]]:
        """Load every registered factory (recording the failures in ``problems``).

        Returns:
            Each registration, by name, with why it cannot be loaded (``None`` when it can).
        """
        loaded: list[tuple[RegisteredProcessor, RegistryError | None]] = []
        for entry in self:
            try:
                entry.signature()
            except RegistryError as exc:
                loaded.append((entry, exc))
            else:
                loaded.append((entry, None))
        return loaded

    def __iter__(self) -> Iterator[RegisteredProcessor]:
        """The registered processors, by name."""
        return iter(sorted(self._entries.values(), key=lambda entry: entry.name))

    def __contains__(self, name: object) -> bool:
        return name in self._entries


@cache
def default_registry() -> ProcessorRegistry:
    """The built-ins plus every processor registered through the ``airflow_mesh.processors`` entry points.

    Built once per process; it never raises (see ``ProcessorRegistry.problems``).

    Returns:
        The registry.
    """
    registry = ProcessorRegistry()
    for name, reference in BUILTINS.items():
        registry.register(name, reference, BUILT_IN)
    registry.register_entry_points()
    return registry


def create_processor(reference: str, params: Mapping[str, Any] | None = None) -> Processor:
    """The processor a DAG refers to: a registered name or a ``module:factory`` reference, with its parameters.

    Args:
        reference: A registered name or a ``package.module:factory`` reference.
        params: The factory's keyword parameters.

    Returns:
        The declared processor.

    Raises:
        UnknownProcessorError: no processor is registered under that name.
        RegistryError: it is refused (a clash), cannot be loaded, or the parameters do not fit.
    """
    return default_registry().resolve(reference).create(params)
