"""Build README.md: the quick start, the student guide (docs/student_guide.md) and pointers.

The README leads with the student; everything else lives in docs/ and is linked from the
README's last section. Edit docs/student_guide.md or the two texts below, then run
``python scripts/build_readme.py``; ``--check`` exits 1 if README.md is out of date (a test
runs it). The README must stay within :data:`MAX_LINES` lines.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 250

HEAD = """\
# Deep Learning from Scratch — the autograded course

Runnable, autograded Jupyter notebooks that take you from numerical differentiation to a deep
convolutional network you wrote yourself, following the book *Deep Learning from Scratch*
(Koki Saitoh, O'Reilly Japan). You write every layer; tests under each exercise tell you at
once what is wrong; at the end you draw digits for your own network to read.

## Quick start

Clone or download this repository, then in its folder (Linux or macOS, on Windows WSL; Python
3.10+ as `python3`):

```sh
./course.sh start    # set up (.venv) and open the course in JupyterLab
./course.sh test     # set up (.venv) and run the whole test suite
```

Nothing needs activating: run every command from this folder. `start` opens on **Start
here**, the course's home page; your answers live in `workspace/` and are never overwritten.
"""

TAIL = """\
## The chapters

| # | chapter | you write (graded) |
|---|---|---|
| 1 | Numerical differentiation | `numerical_diff`, `numerical_gradient`, `gradient_descent`, `softmax`, `cross_entropy_error` |
| 2 | Backpropagation | `MulLayer`/`AddLayer`, `Relu`, `Sigmoid`, `Affine`, `SoftmaxWithLoss`, `TwoLayerNet.gradient` |
| 3 | Training techniques | `SGD` … `Adam`, `BatchNormalization`, `Dropout`, a validation split |
| 4 | Convolutional networks | `im2col`, `Convolution` and `Pooling` forward/backward |
| 5 | Deep networks | augmentation, `.npz` parameters, `LeakyRelu`, `GlobalAvgPooling`, your own CNN |
| 6 | Draw a digit | MNIST-style preprocessing of your drawings, for your own network |

Outlines, exercises and measured results: [docs/chapters_1_3.md](docs/chapters_1_3.md),
[docs/chapters_4_5.md](docs/chapters_4_5.md).

## More

| for | read |
|---|---|
| instructors: release, collect, autograde, formgrader (`./course.sh instructor`), feedback | [docs/instructor_guide.md](docs/instructor_guide.md) |
| the grader: isolation, tamper resistance, large classes, throughput | [docs/grading.md](docs/grading.md) |
| the library `course_lib`: the book's API, conventions | [docs/library.md](docs/library.md) |
| the book's own scripts running on `course_lib` | [docs/book_compatibility.md](docs/book_compatibility.md) |
| speed and accuracy, benchmarks, training recipes | [docs/performance.md](docs/performance.md) |
| MNIST and Fashion-MNIST: cache, downloads, offline use | [docs/datasets.md](docs/datasets.md) |
| the draw-a-digit widget and the pretrained model | [docs/widget.md](docs/widget.md) |
| developers: the tests' environment, tested versions (`constraints.txt`), CI | [docs/development.md](docs/development.md) |

Licence: MIT ([LICENSE](LICENSE)).
"""


def shifted(name: str) -> str:
    """A docs/ page without its title, its headings one level down (outside code blocks)."""
    lines = (ROOT / "docs" / name).read_text().splitlines()
    out, fence = [], False
    for line in lines[1:]:
        if line.lstrip().startswith("```"):
            fence = not fence
        out.append("#" + line if not fence and line.startswith("#") else line)
    return "\n".join(out).strip() + "\n"


def build() -> str:
    guide = shifted("student_guide.md").replace("](datasets.md)", "](docs/datasets.md)")
    return f"{HEAD}\n## Student guide\n\n{guide}\n{TAIL}"


def main(argv: list[str]) -> int:
    text = build()
    lines = len(text.splitlines())
    if lines > MAX_LINES:
        print(f"README.md would have {lines} lines (at most {MAX_LINES})", file=sys.stderr)
        return 1
    path = ROOT / "README.md"
    if "--check" in argv:
        if path.read_text() != text:
            print("README.md is out of date: run python scripts/build_readme.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"README.md: {lines} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
