"""`course-lib warm-kernels` compiles ahead: afterwards no process, no Jupyter kernel compiles.

Everything runs as on a fresh machine: a new, empty HOME and a minimal environment
(as ``env -i``), real processes, a real Jupyter kernel started with the environment
``course-lib lab`` gives JupyterLab. "Compiles nothing" is Numba's own count of cache
misses per dispatcher (:func:`course_lib.kernels.warm.compile_report`), never a timing.
The chapter-like code below is written independently of the warm-up's own workload
(other batch sizes, layers used directly, the book's gradient-check pattern).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("numba")

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

CHAPTER = """
import json, warnings
import numpy as np
from course_lib import kernels, models, optimizers
from course_lib.layers import Convolution, Pooling, Relu
from course_lib.kernels.warm import compile_report

rng = np.random.default_rng(1)
x = rng.random((64, 1, 28, 28), dtype=np.float32)
t = rng.integers(0, 10, 64)
net = models.TwoLayerNet(784, 50, 10, seed=1)  # chapters 1-2
opt = optimizers.Adam()
for _ in range(2):
    opt.update(net.params, net.gradient(x.reshape(64, -1), t))
net.accuracy(rng.random((2000, 784), dtype=np.float32), rng.integers(0, 10, 2000))
net3 = models.MultiLayerNet(784, [100, 100, 100], 10, seed=1)  # chapter 3
optimizers.Momentum().update(net3.params, net3.gradient(x.reshape(64, -1), t))
conv = Convolution(rng.standard_normal((8, 3, 5, 5)).astype(np.float32),  # chapter 4, layers
                   np.zeros(8, np.float32), stride=1, pad=2)
out = Relu().forward(conv.forward(rng.random((20, 3, 16, 16), dtype=np.float32)))
Pooling(2, 2, stride=2).forward(out)
for make in (models.SimpleConvNet, models.DeepConvNet):  # chapters 4-5
    cnn = make(seed=2)
    optimizers.Adam(lr=0.01).update(cnn.params, cnn.gradient(x, t))
    cnn.predict(x[:10])
    cnn64 = cnn.astype(np.float64)  # gradient checks
    cnn64.gradient(x[:3].astype(np.float64), t[:3])
print(json.dumps({"cache_dir": str(kernels.cache_dir()), "active": kernels.active(),
                  "report": compile_report()}))
"""


def fresh_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment, as `env -i`, with ``home`` as HOME."""
    env = {"HOME": str(home), "PATH": f"{BIN}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def chapter_report(env: dict[str, str]) -> dict:
    proc = run([sys.executable, "-c", CHAPTER], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compiled(report: dict) -> dict[str, int]:
    return {name: r["compiled"] for name, r in report.items() if r["compiled"]}


@pytest.fixture(scope="module")
def warmed(tmp_path_factory):
    """A new HOME whose kernel cache `course-lib warm-kernels` filled; (home, its JSON report)."""
    home = tmp_path_factory.mktemp("home")
    proc = run([str(BIN / "course-lib"), "warm-kernels", "--json"], fresh_env(home))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home, json.loads(proc.stdout)


def test_warm_up_compiles_into_the_home_cache(warmed):
    home, result = warmed
    assert result["cache_dir"] == str(home / ".cache" / "course_lib" / "numba")
    assert not result["skipped"]
    assert result["compiled"] > 0, result
    # parallel and serial versions of each kernel, float32 and float64
    assert any(name.endswith(".parallel") for name in result["kernels"]), result["kernels"]
    assert any(name.endswith(".serial") for name in result["kernels"]), result["kernels"]
    # a second warm-up finds the stamp and returns at once, without importing Numba
    again = run([str(BIN / "course-lib"), "warm-kernels", "--json"], fresh_env(home))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] is True


@pytest.mark.parametrize("threads", ["1", "2"])
def test_after_the_warm_up_a_fresh_process_compiles_nothing(warmed, threads):
    home, _ = warmed
    out = chapter_report(fresh_env(home, COURSE_LIB_THREADS=threads))
    assert out["active"] == "numba"
    assert out["cache_dir"] == str(home / ".cache" / "course_lib" / "numba")
    assert out["report"], "no compiled kernel was used: the test exercises nothing"
    assert compiled(out["report"]) == {}, f"compiled after the warm-up: {out['report']}"


def test_forced_warm_up_in_a_fresh_process_loads_every_kernel(warmed):
    home, first = warmed
    proc = run([str(BIN / "course-lib"), "warm-kernels", "--force", "--json"], fresh_env(home))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert compiled(result["kernels"]) == {}, result["kernels"]
    assert result["loaded"] == first["compiled"]


def test_a_jupyter_kernel_uses_the_warmed_cache(warmed):
    """The kernel JupyterLab starts (course-lib lab's environment) finds the same cache."""
    from jupyter_client.manager import start_new_kernel

    from course_lib.cli.lab import jupyter_environment

    home, _ = warmed
    env = jupyter_environment(REPO, "student", base=fresh_env(home))
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(REPO))
    chunks: list[str] = []

    def collect(msg):
        if msg["msg_type"] == "stream":
            chunks.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            chunks.append("\n".join(msg["content"]["traceback"]))

    try:
        reply = kc.execute_interactive(CHAPTER, timeout=600, output_hook=collect)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", "".join(chunks)[-3000:]
    out = json.loads("".join(chunks).strip().splitlines()[-1])
    assert out["cache_dir"] == str(home / ".cache" / "course_lib" / "numba")
    assert out["report"] and compiled(out["report"]) == {}, out["report"]


def test_course_sh_start_launches_the_warm_up(warmed, tmp_path):
    """`./course.sh start` starts the warm-up in the background, with JupyterLab's environment:
    here (a HOME already warmed) it finds the stamp in HOME's cache and says so in its log.
    The warm-up runs on after course.sh has become JupyterLab (here: has exited)."""
    home, _ = warmed
    venv = tmp_path / "venv"  # stands for an installed .venv: course.sh must not install
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "course-lib").symlink_to(BIN / "course-lib")
    python = venv / "bin" / "python"
    python.write_text(
        "#!/bin/sh\n"
        'case "$1" in -m) echo "test: course.sh tried to install" >&2; exit 97;; esac\n'
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    installed = b"extra=course constraints=constraints.txt\n" + b"".join(
        (REPO / name).read_bytes() for name in ("pyproject.toml", "constraints.txt")
    )
    (venv / ".course-installed-course").write_text(hashlib.sha256(installed).hexdigest() + "\n")
    env = fresh_env(home, COURSE_VENV=str(venv), COURSE_LIB_WORKSPACE=str(tmp_path / "work"))
    proc = run(["./course.sh", "start", "--prepare-only"], env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = venv / "warm-kernels.log"
    # "already cached in <folder>" (or, if the layers' source changed since, "cached in")
    expected = f"cached in {home / '.cache' / 'course_lib' / 'numba'}"
    deadline = time.monotonic() + 300
    while not (log.is_file() and expected in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert log.is_file(), "course.sh start did not start the warm-up"
    assert expected in log.read_text()


def test_the_grader_path_is_unaffected(warmed):
    """Under nbgrader (NBGRADER_EXECUTION) the NumPy layers run: Numba is not even imported."""
    home, _ = warmed
    code = CHAPTER + "import sys; print('numba' in sys.modules)"
    proc = run([sys.executable, "-c", code], fresh_env(home, NBGRADER_EXECUTION="autograde"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert json.loads(lines[-2])["active"] == "numpy"
    assert lines[-1] == "False"


def test_a_read_only_file_system_falls_back_to_numpy(tmp_path):
    """Nothing can be written (the whole file system mounted read-only with bubblewrap, HOME
    and /tmp included): the warm-up says so and fails cleanly; the layers run on the NumPy
    path with a warning and give results."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap (bwrap) is not installed")
    home = tmp_path / "home"
    home.mkdir()
    read_only = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--"]
    probe = run([*read_only, "sh", "-c", f"touch {home}/x || touch /tmp/x"], fresh_env(home))
    if probe.returncode == 0 or "Read-only" not in probe.stderr:
        pytest.skip(f"bubblewrap cannot mount read-only here: {probe.stderr[-500:]}")
    env = fresh_env(home)
    proc = run([*read_only, str(BIN / "course-lib"), "warm-kernels"], env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no writable folder for Numba's cache" in proc.stderr
    assert "Traceback" not in proc.stderr
    code = (
        "import sys, warnings\n"
        "import numpy as np\n"
        "from course_lib import kernels, models\n"
        "net = models.SimpleConvNet(seed=0)\n"
        "x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    y = net.predict(x)\n"
        "print(kernels.active(), 'numba' in sys.modules, y.shape)\n"
        "print([str(w.message) for w in caught])\n"
    )
    env = {**env, "COURSE_LIB_KERNELS": "numba", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = run([*read_only, sys.executable, "-c", code], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, warned = proc.stdout.strip().splitlines()
    assert first == "numpy False (4, 10)"
    assert "compiled kernels off" in warned


def test_an_unwritable_numba_cache_dir_is_replaced_with_a_warning(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = "from course_lib import kernels; print(kernels.cache_dir())"
    proc = run(
        [sys.executable, "-W", "always", "-c", code],
        fresh_env(home, NUMBA_CACHE_DIR=str(blocker / "cache")),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(home / ".cache" / "course_lib" / "numba")
    assert "cannot be written" in proc.stderr


def test_no_warm_up_where_the_numpy_layers_are_chosen(tmp_path):
    proc = run(
        [str(BIN / "course-lib"), "warm-kernels"],
        fresh_env(tmp_path, COURSE_LIB_KERNELS="numpy"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "nothing compiled ahead: COURSE_LIB_KERNELS=numpy" in proc.stdout
    assert not list(tmp_path.rglob("*.nbi")), "kernels were compiled"
