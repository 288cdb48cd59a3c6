"""nbgrader's ``Execute`` preprocessor, hardened for untrusted submissions.

:class:`IsolatedExecute` takes ``Execute``'s place in ``Autograde.autograde_preprocessors``:
autograder test cells run in the verdict process (:mod:`course_lib.grading.verdict`),
the kernel starts with resource limits, in the sandbox where bwrap runs
(:mod:`course_lib.grading.sandbox`); a kernel that dies or hangs is restarted and the cells
above are replayed; output is capped while it arrives; the notebook has a time limit
(docs/grading.md, "What a submission can do" and "Tamper resistance").
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import queue
import shutil
import time
from typing import Any

import nbformat
from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbformat import NotebookNode
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    Execute,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)
from traitlets import Bool, Enum, Float, Integer, Unicode

from course_lib.grading.agent import BOOT
from course_lib.grading.course import DEFAULT_KERNEL_USER, Limits
from course_lib.grading.findings import named_error
from course_lib.grading.notebook import ApplyFindings, grade_id, is_test
from course_lib.grading.sandbox import LimitedKernelManager, kernel_account, sandbox_folder
from course_lib.grading.static import verdict_init
from course_lib.grading.verdict import INTERRUPT_GRACE, VerdictProcess

#: The defaults of every limit (the one place they are set: :class:`Limits`).
_LIMITS = Limits()
#: Kernel restarts per notebook before the cells left are not run.
MAX_RESTARTS = 3
#: A cell printing more than this many characters is interrupted.
INTERRUPT_OUTPUT_CHARS = 20_000_000
#: The error names of a cell that ended or hung its kernel: never replayed.
_KERNEL_LOST = ("DeadKernelError", "CellTimeoutError")


def isolated_autograde_preprocessors() -> list[type]:
    """``Autograde.autograde_preprocessors`` with :class:`IsolatedExecute` in place of
    ``Execute``: the one list that ``course-lib grade`` and plain ``nbgrader autograde`` (through
    ``graders/nbgrader_config.py``, so also the formgrader's Autograde button) both use."""
    return [
        IsolatedExecute,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        SaveAutoGrades,
        ApplyFindings,  # the fairness policy, after SaveAutoGrades (course_lib.grading.findings)
        AssignLatePenalties,
        CheckCellMetadata,
    ]


def _error(ename: str, evalue: str) -> NotebookNode:
    return nbformat.from_dict(named_error(ename, evalue))


class IsolatedExecute(Execute):
    """See the module docstring; the CPU-time limit is ``notebook_timeout`` + 60 s."""

    timeout = Integer(_LIMITS.cell_timeout, allow_none=True, help="Seconds per cell.").tag(
        config=True
    )
    memory_limit = Integer(_LIMITS.memory, help="Kernel address space, bytes.").tag(config=True)
    file_size_limit = Integer(_LIMITS.file_size, help="Largest file, bytes.").tag(config=True)
    kernel_user = Unicode(DEFAULT_KERNEL_USER, help="Kernel account under root.").tag(config=True)
    notebook_timeout = Float(_LIMITS.notebook_timeout, help="Seconds per notebook.").tag(
        config=True
    )
    max_output_chars = Integer(_LIMITS.max_output_chars, help="Kept per cell.").tag(config=True)
    isolate_tests = Bool(True, help="Test cells in the verdict process.").tag(config=True)
    scratch_directory = Unicode("", help="Scratch space for kernel homes.").tag(config=True)
    sandbox = Enum(
        ("auto", "bwrap", "off"),
        os.environ.get("COURSE_LIB_SANDBOX", "auto"),
        help="'auto': run kernels in a bubblewrap sandbox where bwrap can run, else with limits "
        "only (logged); 'bwrap': require the sandbox; 'off': limits only.",
    ).tag(config=True)

    # ------------------------------------------------------------------ lifecycle
    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None) -> Any:
        self._verdict: VerdictProcess | None = None
        self._restarts = 0
        self._gave_up: str | None = None  # why the cells left are not run
        self._deadline = time.monotonic() + self.notebook_timeout
        self._cell_chars: dict[int, int] = {}
        self._exit_cells: set[int] = set()
        self.kernel_manager_class = LimitedKernelManager
        self._sandbox_dir = sandbox_folder(self.sandbox, self.log.warning)
        resources = resources if resources is not None else {}
        # for ApplyFindings too: nbgrader hands this resources dict to every later preprocessor
        resources["source_notebook"] = self._source_notebook(resources)
        if self.isolate_tests:
            self._start_verdict(nb, resources["source_notebook"])
        try:
            return super().preprocess(nb, resources, km)
        finally:
            if self._verdict is not None:
                self._verdict.stop()
            if self._sandbox_dir is not None:
                shutil.rmtree(self._sandbox_dir, ignore_errors=True)

    def create_kernel_manager(self) -> Any:
        km = super().create_kernel_manager()
        user = None if self._sandbox_dir else kernel_account(self.kernel_user, self.log.warning)
        km.launcher_options = {
            "memory": self.memory_limit,
            "cpu": int(self.notebook_timeout) + 60,
            "fsize": self.file_size_limit,
            "nproc": 4096,
            "user": user,
            "workdir": self.scratch_directory or None,
        }
        if self._sandbox_dir is not None:
            root, source = self._course_folders()
            # no network in the sandbox: the kernel's ZeroMQ sockets are files in a shared folder
            km.transport = "ipc"
            km.ip = os.path.join(self._sandbox_dir, "kernel")
            km.sandbox = {
                "cwd": (self.resources or {}).get("metadata", {}).get("path") or os.getcwd(),
                "writable": [self._sandbox_dir],
                # the course directory, solutions/ and the course itself
                "hidden": [root, source, os.path.dirname(source)],
            }
        return km

    def _course_folders(self) -> tuple[str, str]:
        """(nbgrader's course directory, the source folder with the hidden tests):
        ``CourseDirectory``'s, under ``course-lib grade`` a private copy of the course as root and
        the course's own ``solutions/``."""
        from nbgrader.coursedir import CourseDirectory

        coursedir = CourseDirectory(config=self.config)
        source = os.path.join(coursedir.root, coursedir.source_directory)
        return coursedir.root, os.path.abspath(source)

    # ------------------------------------------------------------------ verdict process
    def _start_verdict(self, nb: NotebookNode, source_nb: NotebookNode | None) -> None:
        """Start the verdict process; it runs the notebook's setup while the kernel starts."""
        init = verdict_init(source_nb if source_nb is not None else nb)
        init["cells"] = [c.source if c.cell_type == "code" else "" for c in nb.cells]
        # the kernel's first line, before any student cell: the reference watch (refwatch)
        self.extra_arguments = [*self.extra_arguments, f"--IPKernelApp.exec_lines={BOOT}"]
        env = dict(os.environ)
        env.setdefault("MPLBACKEND", "Agg")
        if self._sandbox_dir is not None:  # the verdict's socket, reachable from the sandbox
            env["TMPDIR"] = self._sandbox_dir
        self._verdict = VerdictProcess(init, env, self.scratch_directory or None)

    def _source_notebook(self, resources: dict[str, Any]) -> NotebookNode | None:
        """The instructor's version of the notebook being graded, where it can be found."""
        info = resources.get("nbgrader") or {}
        if not (info.get("assignment") and info.get("notebook")):
            return None
        notebook = f"{info['notebook']}.ipynb"
        path = os.path.join(self._course_folders()[1], info["assignment"], notebook)
        return nbformat.read(path, as_version=4) if os.path.isfile(path) else None

    # ------------------------------------------------------------------ cells
    def output(self, outs: list, msg: dict, display_id: Any, cell_index: int) -> Any:
        content = msg.get("content", {})
        size = len(str(content.get("text", ""))) + sum(
            len(str(v)) for v in (content.get("data") or {}).values()
        )
        total = self._cell_chars.get(cell_index, 0) + size
        self._cell_chars[cell_index] = total
        if total <= self.max_output_chars:
            return super().output(outs, msg, display_id, cell_index)
        if total - size <= self.max_output_chars:
            note = (
                f"\n... output truncated by the grader after {self.max_output_chars} "
                "characters ...\n"
            )
            outs.append(nbformat.v4.new_output("stream", name="stdout", text=note))
        if total - size <= INTERRUPT_OUTPUT_CHARS < total and self.km is not None:
            self._interrupt_task = asyncio.ensure_future(self.km.interrupt_kernel())
        return None

    async def async_execute_cell(
        self,
        cell: NotebookNode,
        cell_index: int,
        execution_count: int | None = None,
        store_history: bool = True,
    ) -> NotebookNode:
        if cell.cell_type != "code" or not cell.source.strip():
            return cell
        if not self._gave_up and time.monotonic() > self._deadline:
            limit = self.notebook_timeout
            self._gave_up = f"not run: the notebook used up its time limit of {limit:g} s"
        if self._gave_up:
            cell.outputs = [_error("NotRun", self._gave_up)]
            return cell
        started = time.monotonic()
        try:
            if self.isolate_tests and is_test(cell):
                return await self._run_test_cell(cell, cell_index)
            return await self._run_kernel_cell(cell, cell_index, execution_count, store_history)
        finally:
            self.log.info("cell %d ran in %.2f s", cell_index, time.monotonic() - started)

    # nbclient binds ``execute_cell`` to its own coroutine at class creation: rebind ours
    execute_cell = run_sync(async_execute_cell)

    async def _run_kernel_cell(
        self, cell: NotebookNode, cell_index: int, execution_count: int | None, store_history: bool
    ) -> NotebookNode:
        timeout = self._get_timeout(cell) or 300
        self._cell_chars[cell_index] = 0
        try:
            result = await asyncio.wait_for(
                super().async_execute_cell(cell, cell_index, execution_count, store_history),
                timeout=timeout + 30,
            )
            if cell_index not in self._exit_cells:
                return result
            # exit() / quit(): the kernel stops right after this cell; start a new one now (and
            # never run this cell again), rather than let a later cell find the kernel dead
            self.log.warning("exit() in cell %d", cell_index)
            await self._restart_kernel(cell_index + 1)
            return cell
        except DeadKernelError:
            error = _error(
                "DeadKernelError",
                "the kernel died while running this cell (a crash, os._exit, exit(), or more "
                f"than {self.memory_limit / 1024**3:.1f} GiB of memory); the grader restarted it "
                "and ran the cells above again",
            )
        except (CellTimeoutError, asyncio.TimeoutError):
            error = _error(
                "CellTimeoutError",
                f"this cell did not finish within {timeout} s and did not stop when interrupted; "
                "the grader restarted the kernel",
            )
        cell.setdefault("outputs", []).append(error)
        self.log.warning("%s in cell %d", error.ename, cell_index)
        await self._restart_kernel(cell_index)
        return cell

    async def _check_raise_for_error(
        self, cell: NotebookNode, cell_index: int, exec_reply: dict[str, Any] | None
    ) -> None:
        payloads = ((exec_reply or {}).get("content") or {}).get("payload") or []
        if any(p.get("source") == "ask_exit" and not p.get("keepkernel") for p in payloads):
            self._exit_cells.add(cell_index)
            cell.setdefault("outputs", []).append(
                _error(
                    "KernelExit",
                    "exit() ends the kernel: the grader started a new one, ran the cells above "
                    "again and went on without this cell",
                )
            )
        return await super()._check_raise_for_error(cell, cell_index, exec_reply)

    async def _run_test_cell(self, cell: NotebookNode, cell_index: int) -> NotebookNode:
        """The test runs in the verdict process while the kernel's agent serves it (this sends
        the kernel the verdict's ``serve`` line, and interrupts it when the test timed out)."""
        assert self._verdict is not None and self.km is not None and self.kc is not None
        timeout = float(self._get_timeout(cell) or 300)
        timeout = max(1.0, min(timeout, self._deadline - time.monotonic()))
        serve = {"cmd": "serve", "kernel_starts": self._restarts, "grade_id": grade_id(cell)}
        answer = await asyncio.to_thread(self._verdict.call, serve)
        if self._verdict.setup_errors is None:
            raise RuntimeError(f"the verdict process did not start: {answer}")
        for err in self._verdict.setup_errors:
            self.log.warning("verdict setup: %s", err)
        self._verdict.setup_errors.clear()  # said once
        if "code" in answer:
            msg_id = await ensure_async(self.kc.execute(answer["code"], silent=True))
            run = {"cmd": "run", "source": cell.source, "timeout": timeout}
            answer = await asyncio.to_thread(self._verdict.call, run, timeout + 60)
        if "outputs" in answer:
            cell.outputs = [nbformat.from_dict(o) for o in answer["outputs"]]
        else:
            error = f"the test could not be run: {answer.get('error')}"
            cell.outputs = [_error("GraderError", error)]
        self.code_cells_executed += 1
        cell.execution_count = None
        if answer.get("timed_out"):
            await ensure_async(self.km.interrupt_kernel())
        served = answer.get("kernel_ok") and await self._kernel_replied(msg_id)
        if not served or not await self.km.is_alive():
            self.log.warning("kernel unusable after test cell %d", cell_index)
            await self._restart_kernel(cell_index)
        return cell

    async def _kernel_replied(self, msg_id: str) -> bool:
        """Whether the kernel finished the request ``msg_id`` within :data:`INTERRUPT_GRACE`."""
        assert self.kc is not None
        deadline = time.monotonic() + INTERRUPT_GRACE
        while (left := deadline - time.monotonic()) > 0:
            try:
                reply = await ensure_async(self.kc.shell_channel.get_msg(timeout=left))
            except queue.Empty:
                return False
            if reply["parent_header"].get("msg_id") == msg_id:
                return True
        return False

    # ------------------------------------------------------------------ restarts
    async def _restart_kernel(self, failed_index: int) -> None:
        """A new kernel, the cells before ``failed_index`` run again; none past the limit."""
        assert self.km is not None
        self._restarts += 1
        if self._restarts > MAX_RESTARTS:
            self._gave_up = (
                f"not run: the kernel died or hung {self._restarts} times, the grader stopped here"
            )
            with contextlib.suppress(Exception):
                await self.km.shutdown_kernel(now=True)
            return
        with contextlib.suppress(Exception):
            if self.kc is not None:
                self.kc.stop_channels()
        self.kc = None
        await self.km.restart_kernel(now=True)
        await self.async_start_new_kernel_client()
        executed = self.code_cells_executed  # the replay does not count
        for index, cell in enumerate(self.nb.cells[:failed_index]):
            lost = any(o.get("ename") in _KERNEL_LOST for o in cell.get("outputs", []))
            if is_test(cell) or index in self._exit_cells or lost:
                continue
            if time.monotonic() > self._deadline:
                break
            self._cell_chars[index] = 0
            try:  # nbclient's own execution, on a copy: the outputs are dropped
                await super().async_execute_cell(copy.deepcopy(cell), index, store_history=False)
            except DeadKernelError:
                break  # the next cell finds the kernel dead and restarts it
            except CellTimeoutError:
                continue
        self.code_cells_executed = executed
