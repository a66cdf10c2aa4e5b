"""Encode methods by name: what ``featx encode --method NAME`` computes (the registry,
:mod:`featx.methods.registry`, with the roles a method reads and the plan that runs them),
and the methods themselves, registered by importing their modules: ``conv`` (cross-layer
pooling and the local poolings), ``fc`` (the fc baselines), ``pyramid`` (the Fisher family,
MPP, scheme 2). See docs/architecture.md, "add an encode method"."""

from featx.methods.registry import GRID_VIEWS, METHODS, ROLES, Context, EncodePlan, Method
from featx.methods.registry import get_methods, method

# the entries register on import
from featx.methods import conv, fc, pyramid  # noqa: E402, F401, I001

__all__ = ["GRID_VIEWS", "METHODS", "ROLES", "Context", "EncodePlan", "Method", "get_methods",
           "method"]
