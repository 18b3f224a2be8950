"""The house's layout: each package's errors descend from its one root, so a caller can
catch a package's failures with one ``except`` and the CLI can show each as one line.

``standins`` is not in the table: each stand-in is a server of its own (the offline Claude,
the demo provider), with its own errors, answered over HTTP and never raised to our code."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from guard.errors import GuardError
from ingress.errors import IngressError
from messages.errors import MessagesError
from runtime.errors import ConfigurationError
from store.errors import StoreError
from system2.errors import System2Error
from vault.errors import VaultError
from workers.errors import WorkerError

ROOTS: dict[str, type[Exception]] = {
    "messages": MessagesError,
    "store": StoreError,
    "guard": GuardError,
    "vault": VaultError,
    "runtime": ConfigurationError,
    "workers": WorkerError,
    "ingress": IngressError,
    "system2": System2Error,
}


def modules(package: str) -> list[str]:
    root = importlib.import_module(package)
    found = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        found.append(info.name)
    return found


def exceptions_defined_in(package: str) -> list[type[BaseException]]:
    defined = []
    for name in modules(package):
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, BaseException):
                defined.append(cls)
    return defined


@pytest.mark.parametrize("package", sorted(ROOTS))
def test_every_exception_of_a_package_descends_from_its_root(package: str) -> None:
    found = exceptions_defined_in(package)
    assert ROOTS[package] in found
    strays = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in found
        if not issubclass(cls, ROOTS[package])
    ]
    assert strays == [], f"not under {ROOTS[package].__name__}: {strays}"


@pytest.mark.parametrize("package", sorted(ROOTS))
def test_a_root_is_no_builtin_error_a_library_would_swallow(package: str) -> None:
    # A ValueError raised inside a pydantic validator becomes a validation error carrying the
    # input; a root straight under Exception is never mistaken for another library's.
    assert ROOTS[package].__bases__ == (Exception,)
