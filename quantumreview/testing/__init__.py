"""Test kit: a fake GitHub on loopback, signed deliveries and pytest fixtures for plugin authors."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quantumreview.testing.fake import FakeGitHub
    from quantumreview.testing.signing import sign, signed_delivery

__all__ = ["FakeGitHub", "sign", "signed_delivery"]

# Imported on first use so the pytest plugin, loaded in every run, stays cheap.
_LAZY = {"FakeGitHub": "quantumreview.testing.fake", "sign": "quantumreview.testing.signing",
         "signed_delivery": "quantumreview.testing.signing"}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
