"""Which code runs while a student's graded code runs: the reference, and reaches for the grader.

**In the verdict process** (pristine), :func:`watch_table` turns exercise names into the
*fingerprints* of their reference code (``course_lib.reference.EXERCISES``): each function the
reference object defines, and the ``course_lib`` functions it calls that the instructor's
solution does not use. A fingerprint hashes what a code object does (instructions, names,
constants, docstring, positions relative to its first line), not where it lives, so the same
code compiled again has the same fingerprint. The table travels to the kernel with each test.

**In the student's kernel**, :func:`install` runs before any student cell: it keeps its own
references to ``sys.setprofile`` and friends and adds an audit hook (PEP 578, which Python code
cannot remove) that notes reaches for the grader. While the agent serves a test (:func:`begin`),
a profile hook runs inside each operation that runs the student's code (:func:`watched`) and on
threads started meanwhile, and looks up each new code object once: the reference's own code is
caught whatever route reached it; a copy compiled again counts when its class (or function)
carries the reference's docstring. :func:`report` returns the hits and notes.

The full design and its threat model (what the watch cannot see): docs/grading.md, "Reference
use, detected by what runs".
"""

from __future__ import annotations

import contextlib
import dis
import hashlib
import linecache
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "begin",
    "end",
    "fingerprint",
    "install",
    "paused",
    "report",
    "watch_table",
    "watched",
]

#: ``course_lib.grading`` modules a kernel legitimately imports (the agent's).
KERNEL_MODULES = frozenset(
    {
        "course_lib.grading",
        "course_lib.grading.agent",
        "course_lib.grading.proxies",
        "course_lib.grading.refwatch",
        "course_lib.grading.rpc",
        "course_lib.grading.wire",
    }
)
#: The grader's modules (prefixes): the engine and the release; not the checks.
GRADER = ("course_lib.grading.", "course_lib.release")
#: Hits and notes kept per test.
MAX_EVENTS = 20


# ------------------------------------------------------------------------------------------
# fingerprints (both sides)


def _const_key(value: Any, depth: int) -> str:
    if hasattr(value, "co_code"):
        return "code:" + (fingerprint(value, depth + 1) if depth < 8 else value.co_name)
    if isinstance(value, frozenset):
        return "frozenset:" + repr(sorted(repr(v) for v in value))
    if isinstance(value, tuple):
        return "tuple:(" + ",".join(_const_key(v, depth) for v in value) + ")"
    return f"{type(value).__name__}:{value!r}"


def fingerprint(code: Any, depth: int = 0) -> str:
    """What a code object does, independent of its file and first line (see the module doc):
    a hash of its normalised instructions, names, constants and relative positions."""
    h = hashlib.blake2b(digest_size=16)
    first = code.co_firstlineno
    h.update(repr((code.co_name, code.co_varnames, code.co_freevars, code.co_cellvars)).encode())
    h.update(repr((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount)).encode())
    instructions = [i for i in dis.get_instructions(code) if i.opname not in _SKIPPED]
    index_of = {ins.offset: n for n, ins in enumerate(instructions)}
    for ins in instructions:
        name = _SAME_AS.get(ins.opname, ins.opname)
        if ins.opcode in _JUMPS:
            arg: Any = index_of.get(ins.argval, -1)
        elif ins.opname in ("LOAD_CONST", "KW_NAMES", "RETURN_CONST"):
            arg = _const_key(ins.argval, depth)
        else:
            arg = ins.argval if isinstance(ins.argval, (str, int, type(None))) else ins.argrepr
        pos = ins.positions
        where = (
            None if pos is None or pos.lineno is None else pos.lineno - first,
            None if pos is None else pos.col_offset,
        )
        h.update(repr((name, arg, where)).encode())
        h.update(b"\x00")
    return h.hexdigest()


#: Instructions that depend on how the compiler optimised a call, not on what the code does: a
#: class compiled alone (``exec(inspect.getsource(Relu))``) calls ``np.maximum`` through
#: LOAD_METHOD, the same class compiled in its module (where ``np`` is an import) through
#: LOAD_ATTR; LOAD_GLOBAL's "push NULL" bit is dropped by comparing its name only.
_SAME_AS = {"LOAD_METHOD": "LOAD_ATTR"}
_SKIPPED = frozenset({"CACHE", "EXTENDED_ARG", "NOP", "RESUME", "PRECALL", "PUSH_NULL"})
_JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)


def _functions_of(obj: Any) -> Iterable[tuple[str, Any]]:
    """(qualified name, function) of the code a reference object defines itself."""
    if isinstance(obj, type):
        for name, value in vars(obj).items():
            for fn in (
                getattr(value, "__func__", None),
                getattr(value, "fget", None),
                getattr(value, "fset", None),
                value,
            ):
                if fn is not None and hasattr(fn, "__code__"):
                    yield f"{obj.__module__}.{obj.__qualname__}.{name}", fn
                    break
    elif hasattr(obj, "__code__"):
        yield f"{obj.__module__}.{obj.__qualname__}", obj


def _resolve(dotted_names: Iterable[str]) -> set[int]:
    """ids of the objects the solution uses (``course_lib.functions.softmax``), by identity."""
    import importlib

    found: set[int] = set()
    for dotted in dotted_names:
        parts = str(dotted).removeprefix("derived:").split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for part in parts[cut:]:
                obj = getattr(obj, part, None)
            if obj is not None:
                found.add(id(obj))
                found |= {id(v) for v in vars(obj).values()} if hasattr(obj, "__path__") else set()
            break
    return found


def _callees(fn: Any, allow: set[int]) -> Iterable[tuple[str, Any]]:
    """Public course_lib functions ``fn`` calls by global name that the solution does not use
    (``course_lib.functions.sigmoid`` behind the reference ``Sigmoid.forward``)."""
    module_globals = getattr(fn, "__globals__", {})
    for name in fn.__code__.co_names:
        value = module_globals.get(name)
        module = getattr(value, "__module__", "") or ""
        if not (hasattr(value, "__code__") and module.startswith("course_lib.")):
            continue
        if name.startswith("_") or id(value) in allow:
            continue
        yield f"{module}.{value.__qualname__}", value


def _where(fn: Any) -> str:
    code = fn.__code__
    tail = "/".join(code.co_filename.replace("\\", "/").split("/")[-3:])
    return f"{tail}:{code.co_firstlineno}"


def _is_at(code: Any, where: str) -> bool:
    tail, _, line = where.rpartition(":")
    filename = code.co_filename.replace("\\", "/")
    return filename.endswith("/" + tail) and str(code.co_firstlineno) == line


def watch_table(
    exercises: Iterable[str], allow: Iterable[str] = (), handed_out: str = ""
) -> dict[str, Any]:
    """The fingerprints of the reference implementations of ``exercises`` (verdict side).

    Returns ``{"prints": {fingerprint: [exercise, label, docstring, where, callee]},
    "names": [[co_name, argcount], ...]}``. ``label`` names the reference function;
    ``docstring`` is what a compiled-again copy must carry to count (the class's for a method,
    else the function's; one the notebook ``handed_out`` proves nothing and is dropped);
    ``where`` (``"<file tail>:<first line>"``) is where the reference's own code is; ``callee``
    marks a library function the reference calls (it counts only when student code calls it).
    ``names`` lets the kernel skip most code objects without hashing them.
    """
    from course_lib.reference import EXERCISES

    allowed = _resolve(allow)
    prints: dict[str, list[Any]] = {}
    names: set[tuple[str, int]] = set()

    def add(fn: Any, exercise: str, label: str, doc: str, callee: bool) -> None:
        code = fn.__code__
        if doc and doc in handed_out:
            doc = ""
        names.add((code.co_name, code.co_argcount))
        prints.setdefault(fingerprint(code), [exercise, label, doc, _where(fn), callee])

    for exercise in sorted(set(exercises)):
        obj = EXERCISES.get(exercise)
        if obj is None:
            continue
        doc = (obj.__doc__ or "").strip() if isinstance(obj, type) else ""
        for label, fn in _functions_of(obj):
            add(fn, exercise, label, doc or (fn.__doc__ or "").strip(), False)
            for callee_label, callee in _callees(fn, allowed):
                callee_doc = (callee.__doc__ or "").strip()
                add(callee, exercise, f"{callee_label} (called by {label})", callee_doc, True)
    return {"prints": prints, "names": sorted(names)}


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
        self.active = False
        self.in_audit = False
        self.hook: Any = None
        self.table: dict[str, list[Any]] = {}
        self.names: set[tuple[str, int]] = set()
        # id(code) -> (code, what it is): the code kept alive so its id stays its own
        self.known: dict[int, tuple[Any, Any]] = {}  # per table: the table's entry or False
        self.prints: dict[int, tuple[Any, str]] = {}  # across tests: fingerprints (costly)
        self.hits: list[dict[str, Any]] = []
        self.notes: list[dict[str, Any]] = []
        self.noted: set[tuple[Any, Any]] = set()
        self.saved_thread_profile: Any = None
        self.own_codes: set[int] = set()


_STATE: _State | None = None


def _site(frame: Any, state: _State) -> dict[str, Any]:
    """Where in the student's cells ``frame`` (or its first caller there) is."""
    probe = frame
    for _ in range(64):
        if probe is None:
            break
        filename = probe.f_code.co_filename
        if "ipykernel_" in filename or filename.startswith("<ipython-input"):
            lines = state.getlines(filename)
            return {
                "file": filename,
                "line": probe.f_lineno,
                "source": "".join(lines)[:20000],
            }
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
    """The docstring of the class ``frame``'s method belongs to (its first argument's class)."""
    code = frame.f_code
    if not code.co_argcount:
        return ""
    try:
        first = frame.f_locals.get(code.co_varnames[0])
    except Exception:
        return ""
    cls = first if isinstance(first, type) else type(first)
    docs = []
    for klass in getattr(cls, "__mro__", ()):
        doc = vars(klass).get("__doc__")
        if isinstance(doc, str):
            docs.append(doc.strip())
    return "\n".join(docs)


def _classify(state: _State, code: Any) -> Any:
    if (code.co_name, code.co_argcount) not in state.names:
        return False
    if id(code) not in state.prints:
        state.prints[id(code)] = (code, fingerprint(code))
    return state.table.get(state.prints[id(code)][1]) or False


def _in_library(frame: Any) -> bool:
    filename = frame.f_code.co_filename.replace("\\", "/") if frame is not None else ""
    return "/course_lib/" in filename


def _make_hook(state: _State) -> Any:
    known = state.known

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        entry = known.get(id(code))
        if entry is None:
            entry = known[id(code)] = (code, _classify(state, code))
        verdict = entry[1]
        if verdict:
            exercise, label, doc, where, callee = verdict
            if callee and _in_library(frame.f_back):
                return  # a helper the library calls (a fallback layer's), not the student
            own = _is_at(code, where)
            if not own and not (doc and doc in _owner_doc(frame)):
                return  # the same short code typed by the student: not a copy
            if len(state.hits) < MAX_EVENTS:
                state.hits.append(
                    {
                        "exercise": exercise,
                        "label": label,
                        "copy": not own,
                        **_site(frame.f_back, state),
                    }
                )

    return hook


def _audit(event: str, args: tuple) -> None:
    state = _STATE
    if state is None or state.in_audit:
        return
    if event not in _AUDITED:
        return
    state.in_audit = True
    try:
        frame = state.getframe(1)
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
            caller = frame.f_code if frame is not None else None
            if "cg-verdict-" in str(address) and id(caller) not in state.own_codes:
                _note(state, frame, "connects to the grader's socket")
        elif event == "sys.setprofile" and state.active:
            caller = frame.f_code if frame is not None else None
            if caller is not state.bootstrap_code and id(caller) not in state.own_codes:
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


_AUDITED = frozenset({"import", "open", "socket.connect", "sys.setprofile", "object.__setattr__"})


def install() -> None:
    """Capture the primitives and add the audit hook (once per kernel, before student code)."""
    global _STATE
    if _STATE is not None:
        return
    state = _State()
    state.hook = _make_hook(state)
    state.own_codes = {id(f.__code__) for f in (begin, end, connect, _set_hook)}
    _STATE = state
    sys.addaudithook(_audit)


def connect(sock: Any, path: str) -> None:
    """The agent's connection to the verdict process (the one connection not reported)."""
    sock.connect(path)


def _watching() -> _State | None:
    """The kernel's state while a test with reference code to watch for is served."""
    state = _STATE
    return state if state is not None and state.active and state.table else None


@contextlib.contextmanager
def _profiled(state: _State, hook: Any) -> Iterator[None]:
    """``hook`` as this thread's profile hook for a while; a watching hook that the student's
    code removed or replaced meanwhile is noted."""
    previous = state.getprofile()
    _set_hook(state, hook)
    try:
        yield
    finally:
        if hook is not None and state.getprofile() is not hook:
            message = "removed or replaced the grader's profile hook (sys.setprofile) during a test"
            if not any("profile hook" in n["message"] for n in state.notes):
                state.notes.append({"kind": "grader", "message": message, "file": "?", "line": 0})
        _set_hook(state, previous)


def _set_hook(state: _State, hook: Any) -> None:
    state.setprofile(hook)


def paused() -> contextlib.AbstractContextManager[None]:
    """Stop watching for a while (the bulk evaluations of a numerical gradient check: they
    repeat the calls the test made directly, and the hook makes Python code about 4x slower)."""
    state = _watching()
    return _profiled(state, None) if state is not None else contextlib.nullcontext()


def watched(op: Any) -> Any:
    """``op`` (an operation the agent serves: the student's code runs in it) with the profile
    hook on while it runs, and only then: the agent's own work (decoding, encoding, hashing
    arrays) stays at full speed."""

    def run(*args: Any, **kwargs: Any) -> Any:
        state = _watching()
        if state is None:
            return op(*args, **kwargs)
        with _profiled(state, state.hook):
            return op(*args, **kwargs)

    return run


def begin(table: dict[str, Any] | None) -> None:
    """Watch the calls of one test for the reference code in ``table`` (see watch_table); the
    hook is on inside the operations wrapped by :func:`watched`."""
    install()
    state = _STATE
    assert state is not None
    prints = dict((table or {}).get("prints") or {})
    if prints != state.table:
        state.table = prints
        state.names = {(str(n), int(a)) for n, a in (table or {}).get("names") or []}
        state.known.clear()
    state.hits = []
    state.saved_thread_profile = getattr(threading, "_profile_hook", None)
    state.active = True
    if state.table:
        state.thread_setprofile(state.hook)


def end() -> None:
    """Stop watching (threads started later are not watched)."""
    state = _STATE
    if state is None or not state.active:
        return
    state.active = False
    if state.table:
        state.thread_setprofile(state.saved_thread_profile)


def report() -> dict[str, Any]:
    """Hits of the reference and reaches for the grader since the last report."""
    state = _STATE
    out = {"hits": [], "notes": [], "watching": False}
    if state is not None:
        out = {"hits": state.hits, "notes": state.notes, "watching": bool(state.table)}
        state.hits, state.notes = [], []
    return out
