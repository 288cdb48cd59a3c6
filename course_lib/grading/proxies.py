"""Proxies: the student's objects as the verdict process sees them.

Every use of a proxy (an attribute, a call, an index, ``len``, ``np.asarray``) is a request
over :mod:`course_lib.grading.rpc`: the student's code runs in the kernel and only data comes
back. A student's class becomes a *mirror* class with the same name, module and (mirrored)
bases, so ``isinstance``, ``type(...).__name__`` and ``check_own_implementation`` work unchanged.
"""

from __future__ import annotations

import builtins
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from course_lib.grading.rpc import Endpoint

#: Attributes of a remote object that proxies forward although they are "dunder" names.
FORWARDED_DUNDERS = frozenset({"__dict__", "__name__", "__qualname__", "__doc__", "__wrapped__"})
_PROXY_MODULE = "course_grader_remote"


def _private(name: str) -> bool:
    """Whether a proxy answers ``name`` itself (AttributeError) instead of asking the kernel."""
    dunder = name.startswith("__") and name.endswith("__")
    return (dunder and name not in FORWARDED_DUNDERS) or name.startswith("_cg_")


class _RemoteBase:
    __slots__ = ("_cg_ep", "_cg_h", "_cg_meta")
    __module__ = _PROXY_MODULE

    def __getattr__(self, name: str) -> Any:
        if _private(name):
            raise AttributeError(name)
        if name in ("__name__", "__qualname__") and self._cg_meta.get(name.strip("_")):
            return self._cg_meta[name.strip("_")]
        return self._cg_ep.request("getattr", self._cg_h, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _RemoteBase.__slots__:
            object.__setattr__(self, name, value)
        else:
            self._cg_ep.request("setattr", self._cg_h, name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._cg_ep.request("call", self._cg_h, *args, **kwargs)

    def __repr__(self) -> str:
        try:
            return str(self._cg_ep.request("repr", self._cg_h))
        except Exception:
            return f"<{type(self).__name__} object in the student's kernel>"

    def __str__(self) -> str:
        return str(self._cg_ep.request("str", self._cg_h))

    def __len__(self) -> int:
        return int(self._cg_ep.request("len", self._cg_h))

    def __bool__(self) -> bool:
        return bool(self._cg_ep.request("bool", self._cg_h))

    def __getitem__(self, key: Any) -> Any:
        return self._cg_ep.request("getitem", self._cg_h, key)

    def __iter__(self) -> Any:
        return iter(self._cg_ep.request("iter", self._cg_h))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = np.asarray(self._cg_ep.request("array", self._cg_h))
        return array.astype(dtype) if dtype is not None else array

    def __deepcopy__(self, memo: Any = None) -> Any:
        return self._cg_ep.request("deepcopy", self._cg_h)

    __copy__ = __deepcopy__

    def __gradcheck_replay__(self, plan: dict[str, Any]) -> Any:
        """:func:`course_lib.gradcheck.replay` of ``plan`` in the kernel, as ONE request."""
        return self._cg_ep.request("gradcheck", self._cg_h, plan)


class _RemoteMeta(type):
    """Metaclass of the local mirrors of the student's classes."""

    __module__ = _PROXY_MODULE

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._cg_class_ep.request("call", cls._cg_class_h, *args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        if _private(name):
            raise AttributeError(name)
        return cls._cg_class_ep.request("getattr", cls._cg_class_h, name)

    def __setattr__(cls, name: str, value: Any) -> None:
        if name.startswith(("_cg_", "__")):
            type.__setattr__(cls, name, value)
        else:
            cls._cg_class_ep.request("setattr", cls._cg_class_h, name, value)


def _library_class(module: str, qualname: str) -> type | None:
    """The verdict's own class ``module.qualname`` when it is an imported course_lib class."""
    if not (module == "course_lib" or module.startswith("course_lib.")):
        return None
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None) if obj is not None else None
    return obj if isinstance(obj, type) else None


class ProxyFactory:
    """Makes the proxies of the connection ``ep`` (its codec's ``make_proxy(handle, meta)``,
    which keeps one per handle: one mirror class per class of the other side)."""

    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep

    def mirror(self, handle: int, meta: dict[str, Any]) -> type:
        bases = tuple(self.ep.codec.proxy(int(b["h"]), b) for b in meta.get("bases") or [])
        name = str(meta.get("name") or "RemoteClass")
        namespace = {
            "__module__": str(meta.get("module") or "__main__"),
            "__qualname__": str(meta.get("qualname") or name),
            "__slots__": (),
            "_cg_class_ep": self.ep,
            "_cg_class_h": handle,
        }
        real = _library_class(namespace["__module__"], namespace["__qualname__"])
        if real is not None:
            # an instance of a course_lib class (a Sequential the student's function built):
            # ``isinstance(proxy, Sequential)`` holds through ``__class__``, while ``type(proxy)``
            # stays the mirror (so check_own_implementation still sees where it comes from)
            namespace["__class__"] = property(lambda self, _real=real: _real)
        try:
            return _RemoteMeta(name, bases or (_RemoteBase,), namespace)
        except TypeError:  # an MRO the mirror cannot reproduce
            return _RemoteMeta(name, (_RemoteBase,), namespace)

    def __call__(self, handle: int, meta: dict[str, Any]) -> Any:
        kind = meta.get("kind")
        if kind == "class":
            return self.mirror(handle, meta)
        if kind == "instance" and meta.get("cls"):
            cls = self.ep.codec.proxy(int(meta["cls"]["h"]), meta["cls"])
        else:  # functions, modules: a class named after the kind, in the object's module
            module = str(meta.get("module") or "__main__")
            cls = type(str(kind), (_RemoteBase,), {"__slots__": (), "__module__": module})
        obj = object.__new__(cls)
        for slot, value in zip(_RemoteBase.__slots__, (self.ep, handle, meta)):
            object.__setattr__(obj, slot, value)
        return obj


class TestNamespace(dict):
    """Globals of the test cells: the verdict process's names first, then the kernel's
    (``resolve(name)``), which :meth:`forget_resolved` drops again."""

    def __init__(self, resolve: Any):
        super().__init__()
        self._resolve = resolve
        self.resolved: dict[str, Any] = {}

    def __missing__(self, key: str) -> Any:
        if hasattr(builtins, key):
            return getattr(builtins, key)
        self[key] = self.resolved[key] = self._resolve(key)
        return self[key]

    def forget_resolved(self) -> None:
        for key, value in self.resolved.items():
            if key in self and self[key] is value:
                del self[key]
        self.resolved.clear()
