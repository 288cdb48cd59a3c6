"""Which code runs while a student's graded code runs: the reference, and reaches for the grader.

In the verdict process, :func:`watch_table` gives the *fingerprints* of the reference code of
some exercises. In the student's kernel, :func:`install` (before any student cell) keeps the
primitives the watch needs and adds an audit hook for reaches for the grader; while
:func:`watching` a test, a profile hook runs inside each operation the agent wraps in
:func:`profiled` and looks each new code object up once; :func:`report` gives the hits and notes. Design and
threat model: docs/grading.md, "Tamper resistance: the design", item 2.
"""

from __future__ import annotations

import contextlib
import dis
import hashlib
import linecache
import pkgutil
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: ``course_lib.grading`` modules a kernel legitimately imports (the agent's).
KERNEL_MODULES = frozenset(
    f"course_lib.grading.{name}" for name in ("agent", "proxies", "refwatch", "rpc", "wire")
)
#: The grader's modules (prefixes): the engine and the release; not the checks.
GRADER = ("course_lib.grading.", "course_lib.release")
#: Hits and notes kept per test.
MAX_EVENTS = 20

#: Instructions that depend on how the compiler optimised a call, not on what the code does
#: (a class compiled alone calls ``np.maximum`` through LOAD_METHOD, in its module through
#: LOAD_ATTR; LOAD_GLOBAL's "push NULL" bit is dropped by comparing its name only).
_SAME_AS = {"LOAD_METHOD": "LOAD_ATTR"}
_SKIPPED = frozenset({"CACHE", "EXTENDED_ARG", "NOP", "RESUME", "PRECALL", "PUSH_NULL"})
_JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)


def _const_key(value: Any, depth: int) -> str:
    if hasattr(value, "co_code"):
        return "code:" + (fingerprint(value, depth + 1) if depth < 8 else value.co_name)
    if isinstance(value, frozenset):
        return "frozenset:" + repr(sorted(repr(v) for v in value))
    if isinstance(value, tuple):
        return "tuple:(" + ",".join(_const_key(v, depth) for v in value) + ")"
    return f"{type(value).__name__}:{value!r}"


def fingerprint(code: Any, depth: int = 0) -> str:
    """A hash of what ``code`` does (normalised instructions, names, constants and positions
    relative to its first line): the same for the same code compiled again anywhere."""
    h = hashlib.blake2b(digest_size=16)
    first = code.co_firstlineno
    h.update(repr((code.co_name, code.co_varnames, code.co_freevars, code.co_cellvars)).encode())
    h.update(repr((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount)).encode())
    instructions = [i for i in dis.get_instructions(code) if i.opname not in _SKIPPED]
    index_of = {ins.offset: n for n, ins in enumerate(instructions)}
    for ins in instructions:
        if ins.opcode in _JUMPS:
            arg: Any = index_of.get(ins.argval, -1)
        elif ins.opname in ("LOAD_CONST", "KW_NAMES", "RETURN_CONST"):
            arg = _const_key(ins.argval, depth)
        else:
            arg = ins.argval if isinstance(ins.argval, (str, int, type(None))) else ins.argrepr
        pos = getattr(ins, "positions", None)  # None before Python 3.11 (then not hashed)
        where = (pos.lineno - first, pos.col_offset) if pos and pos.lineno is not None else None
        h.update(repr((_SAME_AS.get(ins.opname, ins.opname), arg, where)).encode() + b"\x00")
    return h.hexdigest()


def _functions_of(obj: Any) -> Iterable[tuple[str, Any]]:
    """(qualified name, function) of the code a reference object defines itself."""
    if not isinstance(obj, type):
        if hasattr(obj, "__code__"):
            yield f"{obj.__module__}.{obj.__qualname__}", obj
        return
    for name, value in vars(obj).items():
        inner = [getattr(value, key, None) for key in ("__func__", "fget", "fset")]
        fn = next((f for f in (*inner, value) if hasattr(f, "__code__")), None)
        if fn is not None:
            yield f"{obj.__module__}.{obj.__qualname__}.{name}", fn


def _resolve(dotted_names: Iterable[str]) -> set[int]:
    """ids of the objects the solution uses (``course_lib.functions.softmax``), by identity."""
    found: set[int] = set()
    for dotted in dotted_names:
        try:
            obj = pkgutil.resolve_name(str(dotted).removeprefix("derived:"))
        except (ImportError, AttributeError, ValueError):
            continue
        found.add(id(obj))
        found |= {id(v) for v in vars(obj).values()} if hasattr(obj, "__path__") else set()
    return found


def _callees(fn: Any, allow: set[int]) -> Iterable[tuple[str, Any]]:
    """Public course_lib functions ``fn`` calls by global name that the solution does not use
    (``course_lib.functions.sigmoid`` behind the reference ``Sigmoid.forward``)."""
    module_globals = getattr(fn, "__globals__", {})
    for name in fn.__code__.co_names:
        value = module_globals.get(name)
        module = getattr(value, "__module__", "") or ""
        public = not name.startswith("_") and id(value) not in allow
        if public and hasattr(value, "__code__") and module.startswith("course_lib."):
            yield f"{module}.{value.__qualname__}", value


def _where(code: Any) -> str:
    """Where ``code`` is, as ``"<last three parts of its file>:<first line>"``."""
    tail = "/".join(code.co_filename.replace("\\", "/").split("/")[-3:])
    return f"{tail}:{code.co_firstlineno}"


def watch_table(
    exercises: Iterable[str], allow: Iterable[str] = (), handed_out: str = ""
) -> dict[str, list[Any]]:
    """The fingerprints of the reference implementations of ``exercises`` (verdict side).

    Returns ``{fingerprint: [exercise, label, docstring, where, callee, co_name, argcount]}``.
    ``label`` names the reference function;
    ``docstring`` is what a compiled-again copy must carry to count (the class's for a method,
    else the function's; one the notebook ``handed_out`` proves nothing and is dropped);
    ``where`` (``"<file tail>:<first line>"``) is where the reference's own code is; ``callee``
    marks a library function the reference calls (it counts only when student code calls it);
    ``allow``: dotted names of what the solution uses (never a callee). ``co_name`` and
    ``argcount`` let the kernel skip most code objects without hashing them.
    """
    from course_lib.reference import EXERCISES

    allowed = _resolve(allow)
    prints: dict[str, list[Any]] = {}

    def add(fn: Any, exercise: str, label: str, doc: str, callee: bool) -> None:
        code = fn.__code__
        doc = "" if doc in handed_out else doc
        entry = [exercise, label, doc, _where(code), callee, code.co_name, code.co_argcount]
        prints.setdefault(fingerprint(code), entry)

    for exercise in sorted(set(exercises)):
        obj = EXERCISES.get(exercise)
        class_doc = (obj.__doc__ or "").strip() if isinstance(obj, type) else ""
        for label, fn in _functions_of(obj):
            add(fn, exercise, label, class_doc or (fn.__doc__ or "").strip(), False)
            for callee_label, callee in _callees(fn, allowed):
                callee_doc = (callee.__doc__ or "").strip()
                add(callee, exercise, f"{callee_label} (called by {label})", callee_doc, True)
    return prints


# ------------------------------------------------------------------------------------------
# kernel side: captured before any student code runs


class _State:
    def __init__(self) -> None:
        self.setprofile = sys.setprofile
        self.getprofile = sys.getprofile
        self.thread_setprofile = threading.setprofile
        self.getframe = sys._getframe
        self.getlines = linecache.getlines
        bootstrap = getattr(threading.Thread, "_bootstrap_inner", None)
        self.bootstrap_code = getattr(bootstrap, "__code__", None)
        # the code that may call sys.setprofile and connect to the grader's socket unreported
        self.own_codes = {id(connect.__code__), id(profiled.__wrapped__.__code__)}
        self.active = False
        self.in_audit = False
        self.table: dict[str, list[Any]] = {}
        self.names: set[tuple[str, int]] = set()
        # id(code) -> (code, what it is): the code kept alive so its id stays its own
        self.known: dict[int, tuple[Any, Any]] = {}  # per table: the table's entry or False
        self.prints: dict[int, tuple[Any, str]] = {}  # across tests: fingerprints (costly)
        self.hits: list[dict[str, Any]] = []
        self.notes: list[dict[str, Any]] = []
        self.noted: set[tuple[Any, Any]] = set()
        self.hook = _make_hook(self)


_STATE: _State | None = None


def _site(frame: Any, state: _State) -> dict[str, Any]:
    """Where in the student's cells ``frame`` (or its first caller there) is."""
    probe = frame
    for _ in range(64):
        if probe is None:
            break
        filename = probe.f_code.co_filename
        if "ipykernel_" in filename or filename.startswith("<ipython-input"):
            source = "".join(state.getlines(filename))[:20000]
            return {"file": filename, "line": probe.f_lineno, "source": source}
        probe = probe.f_back
    code = frame.f_code if frame is not None else None
    return {"file": getattr(code, "co_filename", "?"), "line": getattr(frame, "f_lineno", 0)}


def _note(state: _State, frame: Any, message: str) -> None:
    """Record a reach for the grader (once per place in the student's code)."""
    site = _site(frame, state)
    place = (site.get("file"), site.get("line"))
    if len(state.notes) < MAX_EVENTS and place not in state.noted:
        state.noted.add(place)
        state.notes.append({"kind": "grader", "message": message, **site})


def _owner_doc(frame: Any) -> str:
    """The docstrings of the class ``frame``'s method belongs to (its first argument's class)."""
    code = frame.f_code
    if not code.co_argcount:
        return ""
    try:
        first = frame.f_locals.get(code.co_varnames[0])
    except Exception:
        return ""
    cls = first if isinstance(first, type) else type(first)
    docs = [vars(klass).get("__doc__") for klass in getattr(cls, "__mro__", ())]
    return "\n".join(doc.strip() for doc in docs if isinstance(doc, str))


def _classify(state: _State, code: Any) -> Any:
    if (code.co_name, code.co_argcount) not in state.names:
        return False
    if id(code) not in state.prints:
        state.prints[id(code)] = (code, fingerprint(code))
    return state.table.get(state.prints[id(code)][1]) or False


def _make_hook(state: _State) -> Callable[[Any, str, Any], None]:
    known = state.known

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        entry = known.get(id(code))
        if entry is None:
            entry = known[id(code)] = (code, _classify(state, code))
        if not entry[1]:
            return
        exercise, label, doc, where, callee = entry[1][:5]
        caller = frame.f_back
        if callee and caller is not None and "/course_lib/" in caller.f_code.co_filename:
            return  # a helper the library calls (a fallback layer's), not the student
        own = _where(code) == where
        if not own and not (doc and doc in _owner_doc(frame)):
            return  # the same short code typed by the student: not a copy
        if len(state.hits) < MAX_EVENTS:
            site = _site(caller, state)
            state.hits.append({"exercise": exercise, "label": label, "copy": not own, **site})

    return hook


_AUDITED = frozenset({"import", "open", "socket.connect", "sys.setprofile", "object.__setattr__"})


def _audit(event: str, args: tuple) -> None:
    state = _STATE
    if state is None or state.in_audit or event not in _AUDITED:
        return
    state.in_audit = True
    try:
        frame = state.getframe(1)
        caller = id(frame.f_code)
        if event == "import":
            module = str(args[0])
            if module.startswith(GRADER) and module not in KERNEL_MODULES:
                _note(state, frame, f"imports the grader's module `{module}`")
        elif event == "open":
            path = str(args[0]) if args and isinstance(args[0], (str, bytes)) else ""
            if "gradebook" in path or "cg-verdict-" in path:
                _note(state, frame, f"opens `{path}`, a file of the grader")
        elif event == "socket.connect":
            address = args[1] if len(args) > 1 else ""
            if "cg-verdict-" in str(address) and caller not in state.own_codes:
                _note(state, frame, "connects to the grader's socket")
        elif event == "sys.setprofile" and state.active:
            if caller != id(state.bootstrap_code) and caller not in state.own_codes:
                _note(state, frame, "replaces the grader's profile hook while a test runs")
        elif event == "object.__setattr__":
            target = args[0] if args else None
            module = str(getattr(target, "__module__", "") or "")
            if module.startswith(GRADER):
                _note(state, frame, f"changes `{getattr(target, '__qualname__', target)}`")
    except Exception:  # an audit hook must never break the student's code
        pass
    finally:
        state.in_audit = False


def install() -> _State:
    """Capture the primitives and add the audit hook (once per kernel, before student code)."""
    global _STATE
    if _STATE is None:
        _STATE = _State()
        sys.addaudithook(_audit)
    return _STATE


def connect(sock: Any, path: str) -> None:
    """The agent's connection to the verdict process (the one connection not reported)."""
    sock.connect(path)


@contextlib.contextmanager
def profiled(watch: bool) -> Iterator[None]:
    """While a test with reference code to watch for is served: the watch's hook (``watch``)
    or none as this thread's profile hook; a hook the student's code removed is noted.

    The agent wraps each operation that runs the student's code in ``profiled(True)`` (as a
    decorator: the hook is on only then, the agent's own work stays at full speed), and the
    bulk evaluations of a numerical gradient check in ``profiled(False)`` (they repeat the
    calls the test made directly, and the hook makes Python code about 4x slower)."""
    state = _STATE
    if state is None or not state.active or not state.table:
        yield
        return
    hook = state.hook if watch else None
    previous = state.getprofile()
    state.setprofile(hook)
    try:
        yield
    finally:
        if hook is not None and state.getprofile() is not hook:
            message = "removed or replaced the grader's profile hook (sys.setprofile) during a test"
            if not any("profile hook" in n["message"] for n in state.notes):
                state.notes.append({"kind": "grader", "message": message, "file": "?", "line": 0})
        state.setprofile(previous)


@contextlib.contextmanager
def watching(table: dict[str, list[Any]] | None) -> Iterator[None]:
    """Watch the calls of one test for the reference code in ``table`` (see watch_table), on
    this thread and on threads started meanwhile (not later)."""
    state = install()
    table = table or {}
    if table != state.table:
        state.table = table
        state.names = {(str(entry[5]), int(entry[6])) for entry in state.table.values()}
        state.known.clear()
    state.hits = []
    thread_profile = getattr(threading, "_profile_hook", None)
    state.active = True
    if state.table:
        state.thread_setprofile(state.hook)
    try:
        yield
    finally:
        state.active = False
        if state.table:
            state.thread_setprofile(thread_profile)


def report() -> dict[str, Any]:
    """Hits of the reference and reaches for the grader since the last report."""
    state = install()
    out = {"hits": state.hits, "notes": state.notes}
    state.hits, state.notes = [], []
    return out
