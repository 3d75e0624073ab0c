"""Methods and samplers looked up by name (``method=NAME``, ``sampler=NAME``), as big_vision looks up models.

A method is registered once, with its config dataclass and a ``build`` function:

    register_method("mymethod", MyConfig, build)      # build(dataset, config: ResolvedConfig) -> Method

``MyConfig``'s fields are the method's keys (``hmljax train method=mymethod key=value``). It may define
``resolve(self, spec) -> MyConfig`` (fill defaults from the dataset's published settings),
``inapplicable(self) -> dict[key, why]`` (keys set that do not apply to the other settings: an error),
and ``validate(self)`` (ranges). Samplers are registered the same way with their own config class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

from hmljax._suggest import did_you_mean

__all__ = ["MethodSpec", "SamplerSpec", "register_method", "register_sampler", "get_method", "get_sampler",
           "list_methods", "list_samplers"]


class MethodSpec(NamedTuple):
    name: str
    config: type
    build: Callable[..., Any]
    doc: str


class SamplerSpec(NamedTuple):
    name: str
    config: type
    build: Callable[..., Any]  # build(config, *, num_rows, batch_size, seed, drop_remainder[, x, y]) -> sampler
    doc: str
    needs_data: bool = False  # build also takes the training rows x [N, D] and labels y [N, C] (numpy)


_METHODS: dict[str, MethodSpec] = {}
_SAMPLERS: dict[str, SamplerSpec] = {}


def _check_config(kind: str, name: str, config: type) -> None:
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"{kind} {name!r}: its config must be a dataclass, got {config!r}")


def register_method(name: str, config: type, build: Callable, *, doc: str = "", replace: bool = False) -> None:
    """Makes ``method=name`` available. ``replace=True`` allows re-registering (tests, notebooks)."""
    _check_config("method", name, config)
    if name in _METHODS and not replace:
        raise ValueError(f"method {name!r} is already registered (pass replace=True to redefine it)")
    _METHODS[name] = MethodSpec(name, config, build, doc or (build.__doc__ or "").strip().split("\n")[0])


def register_sampler(name: str, config: type, build: Callable, *, doc: str = "", replace: bool = False,
                     needs_data: bool = False) -> None:
    """Makes ``sampler=name`` available. ``needs_data=True``: ``build`` also gets the training rows as
    ``x=`` ``[N, D]`` and ``y=`` ``[N, C]`` (numpy; e.g. for label-imbalance statistics)."""
    _check_config("sampler", name, config)
    if name in _SAMPLERS and not replace:
        raise ValueError(f"sampler {name!r} is already registered (pass replace=True to redefine it)")
    _SAMPLERS[name] = SamplerSpec(name, config, build, doc or (build.__doc__ or "").strip().split("\n")[0],
                                  needs_data)


def _builtins() -> None:
    import hmljax.methods  # noqa: F401 - registers the built-in methods and samplers


def get_method(name: str) -> MethodSpec:
    _builtins()
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}{did_you_mean(name, _METHODS)}; "
                         f"registered: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def get_sampler(name: str) -> SamplerSpec:
    _builtins()
    if name not in _SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}{did_you_mean(name, _SAMPLERS)}; "
                         f"registered: {', '.join(sorted(_SAMPLERS))}")
    return _SAMPLERS[name]


def list_methods() -> dict[str, MethodSpec]:
    _builtins()
    return dict(_METHODS)


def list_samplers() -> dict[str, SamplerSpec]:
    _builtins()
    return dict(_SAMPLERS)
