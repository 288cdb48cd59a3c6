"""Proxies: the student's objects as the verdict process sees them.

A proxy stands for an object that lives in the student's kernel; every use of it (an attribute,
a call, an index, ``len``, ``np.asarray``) is a request over :mod:`course_lib.grading.rpc`, so
the student's code runs in the kernel and only data comes back. A class of the student's
becomes a *mirror* class with the same name, module and (mirrored) bases, so ``isinstance``,
``type(...).__name__`` and ``check_own_implementation`` work unchanged.
"""

from __future__ import annotations

import builtins
import sys
from typing import Any

import numpy as np

from course_lib.grading.rpc import Endpoint

__all__ = ["FORWARDED_DUNDERS", "ProxyFactory", "TestNamespace", "is_proxy"]

#: Attributes of a remote object that proxies forward although they are "dunder" names.
FORWARDED_DUNDERS = frozenset({"__dict__", "__name__", "__qualname__", "__doc__", "__wrapped__"})


# ------------------------------------------------------------------------------------------
# proxies of the kernel's objects

_PROXY_MODULE = "course_grader_remote"


class _RemoteBase:
    __slots__ = ("_cg_ep", "_cg_h", "_cg_meta")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__") and name not in FORWARDED_DUNDERS:
            raise AttributeError(name)
        if name in ("__name__", "__qualname__"):
            meta = object.__getattribute__(self, "_cg_meta")
            if meta.get(name.strip("_")):
                return meta[name.strip("_")]
        ep = object.__getattribute__(self, "_cg_ep")
        return ep.request("getattr", object.__getattribute__(self, "_cg_h"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _RemoteBase.__slots__:
            object.__setattr__(self, name, value)
            return
        self._cg_ep.request("setattr", self._cg_h, name, value)

    def __delattr__(self, name: str) -> None:
        self._cg_ep.request("delattr", self._cg_h, name)

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

    def __setitem__(self, key: Any, value: Any) -> None:
        self._cg_ep.request("setitem", self._cg_h, key, value)

    def __iter__(self) -> Any:
        return iter(self._cg_ep.request("iter", self._cg_h))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = np.asarray(self._cg_ep.request("array", self._cg_h))
        return array.astype(dtype) if dtype is not None else array

    def __copy__(self) -> Any:
        return self._cg_ep.request("deepcopy", self._cg_h)

    def __deepcopy__(self, memo: Any) -> Any:
        return self._cg_ep.request("deepcopy", self._cg_h)

    def __gradcheck_replay__(self, plan: dict[str, Any]) -> Any:
        """A gradient check's evaluations in the kernel, in one request (course_lib.gradcheck).

        A numerical check calls ``forward`` twice per checked number (hundreds to thousands
        of calls per test cell); one socket round trip each took over 30 s under load. The
        kernel runs the student's calls of the plan (the same ``replay`` the local check
        uses) and returns raw outputs; dout, the centred differences and the comparison stay
        here.
        """
        ep = object.__getattribute__(self, "_cg_ep")
        return ep.request("gradcheck", object.__getattribute__(self, "_cg_h"), plan)


_RemoteBase.__module__ = _PROXY_MODULE


class _RemoteMeta(type):
    """Metaclass of the local mirrors of the student's classes."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._cg_class_ep.request("call", cls._cg_class_h, *args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__") and name.endswith("__") and name not in FORWARDED_DUNDERS:
            raise AttributeError(name)
        if name.startswith("_cg_"):
            raise AttributeError(name)
        return cls._cg_class_ep.request("getattr", cls._cg_class_h, name)

    def __setattr__(cls, name: str, value: Any) -> None:
        if name.startswith("_cg_") or name.startswith("__"):
            type.__setattr__(cls, name, value)
            return
        cls._cg_class_ep.request("setattr", cls._cg_class_h, name, value)

    def __repr__(cls) -> str:
        return f"<class '{cls.__module__}.{cls.__qualname__}'>"


_RemoteMeta.__module__ = _PROXY_MODULE


def _mirror_class(ep: Endpoint, meta: dict[str, Any], cache: dict[int, type]) -> type:
    handle = int(meta["h"])
    if handle in cache:
        return cache[handle]
    bases = tuple(_mirror_class(ep, b, cache) for b in meta.get("bases") or [])
    name = str(meta.get("name") or "RemoteClass")
    namespace = {
        "__module__": str(meta.get("module") or "__main__"),
        "__qualname__": str(meta.get("qualname") or name),
        "__slots__": (),
        "_cg_class_ep": ep,
        "_cg_class_h": handle,
    }
    real = _library_class(namespace["__module__"], namespace["__qualname__"])
    if real is not None:
        # an instance of a course_lib class (a Sequential the student's function built):
        # ``isinstance(proxy, Sequential)`` holds through ``__class__``, while ``type(proxy)``
        # stays the mirror (so check_own_implementation still sees where it comes from)
        namespace["__class__"] = property(lambda self, _real=real: _real)
    try:
        cls = _RemoteMeta(name, bases or (_RemoteBase,), namespace)
    except TypeError:  # an MRO the mirror cannot reproduce
        cls = _RemoteMeta(name, (_RemoteBase,), namespace)
    cache[handle] = cls
    return cls


def _library_class(module: str, qualname: str) -> type | None:
    """The verdict's own class ``module.qualname`` when it is an imported course_lib class."""
    if not (module == "course_lib" or module.startswith("course_lib.")):
        return None
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None) if obj is not None else None
    return obj if isinstance(obj, type) else None


class ProxyFactory:
    def __init__(self) -> None:
        self.classes: dict[int, type] = {}
        self.kinds: dict[tuple[str, str, str], type] = {}

    def __call__(self, ep: Endpoint, handle: int, meta: dict[str, Any]) -> Any:
        kind = meta.get("kind")
        if kind == "class":
            return _mirror_class(ep, meta, self.classes)
        if kind == "instance" and meta.get("cls"):
            cls = _mirror_class(ep, meta["cls"], self.classes)
        else:  # functions, modules: a class that carries the object's module and name
            key = (str(kind), str(meta.get("module")), str(meta.get("qualname")))
            cls = self.kinds.get(key)
            if cls is None:
                cls = type(
                    "function" if kind == "function" else str(kind),
                    (_RemoteBase,),
                    {"__slots__": (), "__module__": str(meta.get("module") or "__main__")},
                )
                self.kinds[key] = cls
        obj = object.__new__(cls)
        object.__setattr__(obj, "_cg_ep", ep)
        object.__setattr__(obj, "_cg_h", handle)
        object.__setattr__(obj, "_cg_meta", meta)
        return obj


def is_proxy(obj: Any) -> bool:
    """Whether ``obj`` stands for an object of the student's kernel."""
    return isinstance(obj, _RemoteBase)


# ------------------------------------------------------------------------------------------
# the namespace test cells run in


class TestNamespace(dict):
    """Globals of the test cells: the verdict process's names first, then the kernel's."""

    def __init__(self, resolve: Any):
        super().__init__()
        self._resolve = resolve
        self.resolved: dict[str, Any] = {}

    def __missing__(self, key: str) -> Any:
        if hasattr(builtins, key):
            return getattr(builtins, key)
        value = self._resolve(key)
        self.resolved[key] = value
        dict.__setitem__(self, key, value)
        return value

    def forget_resolved(self) -> None:
        for key, value in self.resolved.items():
            if dict.get(self, key, None) is value:
                dict.__delitem__(self, key)
        self.resolved.clear()


# ------------------------------------------------------------------------------------------
