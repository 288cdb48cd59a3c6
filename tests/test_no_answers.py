"""No handed-out answers: the student notebooks in chapters/ never hold an exercise's code.

A stuck student continues with ONE line that switches to the reference object
(``Relu = course_lib.reference.Relu``); working code of an exercise must not appear in any
other cell of a student notebook, commented out or not, nor in a markdown code block.

How the scan works. The *answers* are the statements between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` in the answer cells of every source notebook in ``solutions/``, grouped by
exercise (the answer cell's grade id and the class or function that holds the statements).
Each statement is normalised through the AST (``ast.unparse``: layout, parentheses, quotes
and comments do not matter; ``return e`` counts as ``e``) and weighed by its number of AST
nodes. Every *other* cell of every notebook in ``chapters/`` is read as code: the code itself,
every run of comment lines uncommented and parsed back (the parseable parts), the fenced
code blocks and inline code of markdown. A cell holds an exercise's answer when its
statements cover at least half of the weight of that exercise's answer (and at least
``MIN_WEIGHT`` nodes, or the whole answer when it is smaller), or when it defines a class or
function of an exercise's name with a body.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
#: A matched answer must weigh at least this many AST nodes (unless the answer is smaller):
#: a lone ``return x + y`` in a demonstration is not a handed-out answer.
MIN_WEIGHT = 10
#: Fraction of an answer's weight that a cell must hold to count as handing it out.
SHARE = 0.5

# AST nodes that carry no content of their own (contexts, operators).
_NO_WEIGHT = (ast.expr_context, ast.operator, ast.cmpop, ast.unaryop, ast.boolop)
_BEGIN, _END = "### BEGIN SOLUTION", "### END SOLUTION"


# --------------------------------------------------------------------------------------------
# Normalised statements
# --------------------------------------------------------------------------------------------


def _weight(*nodes: ast.AST | None) -> int:
    return sum(
        1
        for node in nodes
        if node is not None
        for sub in ast.walk(node)
        if not isinstance(sub, _NO_WEIGHT)
    )


def statement_key(stmt: ast.stmt) -> tuple[str, int] | None:
    """A statement as (normalised text, weight); None for what carries no answer."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return None  # signatures are given to the student; the body counts statement by statement
    if isinstance(stmt, (ast.Pass, ast.Break, ast.Continue, ast.Import, ast.ImportFrom)):
        return None
    if isinstance(stmt, ast.Raise):
        return None
    if isinstance(stmt, ast.Return):
        return (ast.unparse(stmt.value), _weight(stmt.value)) if stmt.value else None
    if isinstance(stmt, ast.Expr):
        if isinstance(stmt.value, ast.Constant):
            return None  # docstrings
        return ast.unparse(stmt.value), _weight(stmt.value)
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return f"for {ast.unparse(stmt.target)} in {ast.unparse(stmt.iter)}:", _weight(
            stmt.target, stmt.iter
        )
    if isinstance(stmt, (ast.If, ast.While)):
        kind = "if" if isinstance(stmt, ast.If) else "while"
        return f"{kind} {ast.unparse(stmt.test)}:", _weight(stmt.test)
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        items = ", ".join(ast.unparse(item) for item in stmt.items)
        return f"with {items}:", sum(_weight(i.context_expr, i.optional_vars) for i in stmt.items)
    if isinstance(stmt, ast.Try):
        return None
    return ast.unparse(stmt), _weight(stmt)


def statements(tree: ast.AST) -> dict[str, int]:
    """Every statement of ``tree`` (all nesting levels) -> its weight."""
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt):
            key = statement_key(node)
            if key is not None:
                found[key[0]] = key[1]
    return found


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(textwrap.dedent(text))
    except (SyntaxError, ValueError):
        return None


def parse_fragments(lines: list[str]) -> list[ast.Module]:
    """The parseable parts of ``lines``: from each line on, the longest run that parses."""
    trees: list[ast.Module] = []
    i = 0
    while i < len(lines):
        for j in range(len(lines), i, -1):
            chunk = "\n".join(lines[i:j])
            tree = _parse(chunk) if chunk.strip() else None
            if tree is not None and tree.body:
                trees.append(tree)
                i = j
                break
        else:
            i += 1
    return trees


_COMMENT = re.compile(r"^\s*#")
_MAGIC = re.compile(r"^\s*[%!]")
_FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
_INLINE = re.compile(r"`([^`\n]+)`")


def _uncomment(line: str) -> str:
    body = line.lstrip()[1:]
    return body[1:] if body.startswith(" ") else body


def code_of_cell(cell: nbformat.NotebookNode) -> list[ast.Module]:
    """Everything in a cell that reads as Python: the code, commented-out code, markdown code."""
    source = cell.source
    if cell.cell_type == "markdown":
        blocks = [m.group(1) for m in _FENCE.finditer(source)]
        outside = _FENCE.sub("", source)
        trees = [t for block in blocks for t in parse_fragments(block.splitlines())]
        trees += [t for span in _INLINE.findall(outside) if (t := _parse(span)) is not None]
        return trees
    lines = ["" if _MAGIC.match(ln) else ln for ln in source.splitlines()]
    whole = _parse("\n".join(lines))
    trees = (
        [whole]
        if whole is not None
        else parse_fragments([ln for ln in lines if not _COMMENT.match(ln)])
    )
    run: list[str] = []
    for line in [*lines, ""]:
        if _COMMENT.match(line):
            run.append(_uncomment(line))
        elif run:
            trees += parse_fragments(run)
            run = []
    return trees


def defined_names(tree: ast.AST) -> set[str]:
    """Classes and functions ``tree`` defines with a real body (more than pass/raise/docstring),
    also under another name: ``shift_images = my_shift``, ``TwoLayerNet.gradient = _gradient``
    (then ``TwoLayerNet`` and ``gradient`` count) for a ``my_shift`` / ``_gradient`` defined here."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if statements(ast.Module(body=node.body, type_ignores=[])):
                names.add(node.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name):
            if node.value.id not in names:
                continue
            for target in node.targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
                    elif isinstance(sub, ast.Attribute):
                        names.add(sub.attr)
    return names


# --------------------------------------------------------------------------------------------
# The answers of the source notebooks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    chapter: str
    grade_id: str
    name: str  # the class or function holding the answer (the grade id for top-level code)
    statements: tuple[tuple[str, int], ...]

    @property
    def weight(self) -> int:
        return sum(w for _, w in self.statements)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.chapter}, answer cell {self.grade_id})"


def _solution_lines(source: str) -> set[int]:
    """1-based line numbers strictly inside the solution regions of ``source``."""
    inside, lines = False, set()
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip().startswith(_BEGIN):
            inside = True
        elif line.strip().startswith(_END):
            inside = False
        elif inside:
            lines.add(number)
    return lines


def answers_of_cell(chapter: str, grade_id: str, source: str) -> list[Answer]:
    tree = ast.parse(source)
    region = _solution_lines(source)
    by_name: dict[str, dict[str, int]] = {}

    def visit(node: ast.AST, owner: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = owner
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = child.name if owner == grade_id else owner
            if isinstance(child, ast.stmt) and child.lineno in region:
                key = statement_key(child)
                if key is not None:
                    by_name.setdefault(name, {})[key[0]] = key[1]
            visit(child, name)

    visit(tree, grade_id)
    return [
        Answer(chapter, grade_id, name, tuple(sorted(found.items())))
        for name, found in by_name.items()
        if found
    ]


def answers_of_notebook(chapter: str, nb: nbformat.NotebookNode) -> list[Answer]:
    found = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution") and _BEGIN in cell.source:
            found += answers_of_cell(chapter, meta["grade_id"], cell.source)
    return found


@cache
def all_answers() -> tuple[Answer, ...]:
    found: list[Answer] = []
    for path in sorted((REPO / "solutions").glob("*/*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        found += answers_of_notebook(path.parent.name, nbformat.read(path, as_version=4))
    return tuple(found)


# --------------------------------------------------------------------------------------------
# The scan
# --------------------------------------------------------------------------------------------


def cell_label(index: int, cell: nbformat.NotebookNode) -> str:
    first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
    return f"cell {index} ({cell.cell_type}: {first[:60]!r})"


def handed_out(cell: nbformat.NotebookNode, answers: Iterable[Answer]) -> Iterator[str]:
    """Why ``cell`` holds an answer, one message per exercise it gives away."""
    trees = code_of_cell(cell)
    found: dict[str, int] = {}
    names: set[str] = set()
    for tree in trees:
        found.update(statements(tree))
        names |= defined_names(tree)
    for answer in answers:
        matched = [(s, w) for s, w in answer.statements if s in found]
        weight = sum(w for _, w in matched)
        if weight >= SHARE * answer.weight and weight >= min(answer.weight, MIN_WEIGHT):
            shown = "; ".join(s for s, _ in matched[:4])
            yield (
                f"holds the answer of {answer.label}: {len(matched)} of its "
                f"{len(answer.statements)} statements ({weight} of {answer.weight} AST nodes), "
                f"e.g. {shown}"
            )
        elif answer.name in names and answer.name != answer.grade_id:
            yield f"defines {answer.name} with a body, the exercise of {answer.label}"


def scan_notebook(nb: nbformat.NotebookNode, answers: Iterable[Answer]) -> list[str]:
    answers = tuple(answers)
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.metadata.get("nbgrader", {}).get("solution"):
            continue  # the student's own answer cells
        problems += [f"{cell_label(index, cell)} {why}" for why in handed_out(cell, answers)]
    return problems


STUDENT_NOTEBOOKS = sorted(
    p for p in (REPO / "chapters").glob("*/*.ipynb") if ".ipynb_checkpoints" not in p.parts
)


@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=lambda p: p.parent.name)
def test_student_notebook_hands_out_no_answer(path: Path) -> None:
    problems = scan_notebook(nbformat.read(path, as_version=4), all_answers())
    assert not problems, (
        f"{path.relative_to(REPO)} hands out answers (a stuck student gets ONE line such as "
        "`Relu = course_lib.reference.Relu`, never working code):\n  " + "\n  ".join(problems)
    )


# --------------------------------------------------------------------------------------------
# The scan itself can fail
# --------------------------------------------------------------------------------------------


def _cell(source: str, cell_type: str = "code") -> nbformat.NotebookNode:
    if cell_type == "markdown":
        return nbformat.v4.new_markdown_cell(source)
    return nbformat.v4.new_code_cell(source)


def _solution_region(source: str) -> str:
    region = _solution_lines(source)
    return "\n".join(ln for n, ln in enumerate(source.splitlines(), 1) if n in region)


def test_every_chapter_has_answers_to_protect() -> None:
    chapters = {a.chapter for a in all_answers()}
    sources = {p.parent.name for p in (REPO / "solutions").glob("*/*.ipynb")}
    assert chapters == sources, f"no answers found in {sorted(sources - chapters)}"
    assert len(STUDENT_NOTEBOOKS) >= 6, STUDENT_NOTEBOOKS


@pytest.mark.parametrize("answer", all_answers(), ids=lambda a: f"{a.chapter}:{a.name}")
def test_every_answer_is_found_when_commented_out(answer: Answer) -> None:
    """The answer cell's own solution code, pasted commented out (reformatted through the AST,
    re-indented) into another cell, is found and named."""
    nb = nbformat.read(REPO / "solutions" / answer.chapter / f"{answer.chapter}.ipynb", 4)
    (source,) = [
        c.source
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == answer.grade_id
    ]
    region = textwrap.dedent(_solution_region(source))
    tree = _parse(region)
    text = ast.unparse(tree) if tree is not None else region
    commented = "# Stuck? Uncomment these lines:\n" + "\n".join(
        f"#     {ln}" if ln else "#" for ln in text.splitlines()
    )
    for cell in (_cell(commented), _cell(text), _cell(f"```python\n{text}\n```", "markdown")):
        messages = list(handed_out(cell, [answer]))
        assert messages and answer.name in messages[0], (answer.label, cell.source[:300])


def test_the_one_line_fallback_is_not_an_answer() -> None:
    cells = [
        _cell(
            "# Stuck? Uncomment the next line to continue with the reference implementation.\n"
            f"# {name} = course_lib.reference.{name}"
        )
        for name in {a.name for a in all_answers()}
    ]
    cells.append(_cell("# TwoLayerNet.gradient = course_lib.reference.TwoLayerNet.gradient"))
    nb = nbformat.v4.new_notebook(cells=cells)
    assert scan_notebook(nb, all_answers()) == []


OLD_FALLBACKS = {
    # handed out by chapters/ch01 and ch02 before issue 12: each must be found
    "gradient_descent": """\
# Stuck? Uncomment the lines below to continue the chapter with a working gradient_descent.
# def gradient_descent(grad_f, init_x, lr=0.01, step_num=100):
#     x, path = np.array(init_x, dtype=float), [np.array(init_x, dtype=float)]
#     for _ in range(step_num):
#         x = x - lr * grad_f(x)
#         path.append(x)
#     return x, np.array(path)
#
#
# gradient_descent.__module__ = "course_lib.fallback"
""",
    "TwoLayerNet": """\
# Stuck? Uncomment the lines below to give TwoLayerNet a working gradient method and continue.
# def _gradient(self, x, t):
#     self.loss(x, t)
#     dout = self.last_layer.backward(1)
#     for layer in reversed(list(self.layers.values())):
#         dout = layer.backward(dout)
#     a1, a2 = self.layers["Affine1"], self.layers["Affine2"]
#     return {"W1": a1.dW, "b1": a1.db, "W2": a2.dW, "b2": a2.db}
#
#
# _gradient.__module__ = "course_lib.fallback"
# TwoLayerNet.gradient = _gradient
""",
    "MulLayer": """\
# Stuck? Uncomment these lines to continue the chapter with working versions of both layers.
# class MulLayer:
#     def forward(self, x, y):
#         self.x, self.y = x, y
#         return x * y
#
#     def backward(self, dout):
#         return dout * self.y, dout * self.x
""",
}


@pytest.mark.parametrize("name", sorted(OLD_FALLBACKS))
def test_the_old_fallbacks_are_found(name: str) -> None:
    answers = [a for a in all_answers() if a.name == name]
    assert answers, f"no exercise {name} in solutions/"
    nb = nbformat.v4.new_notebook(cells=[_cell("x = 1"), _cell(OLD_FALLBACKS[name])])
    problems = scan_notebook(nb, answers)
    assert problems and problems[0].startswith("cell 1 (code:") and name in problems[0], problems


def test_answer_cells_and_other_exercises_are_not_flagged() -> None:
    """The student's own answer cells are not scanned; a demonstration that shares one short
    statement with an answer is not an answer."""
    (answer,) = [a for a in all_answers() if a.name == "gradient_descent"]
    solution = _cell("def gradient_descent(grad_f, init_x, lr=0.01, step_num=100):\n    pass")
    solution.metadata["nbgrader"] = {"solution": True, "grade_id": answer.grade_id}
    (body,) = [s for s, _ in answer.statements if s.startswith("x = x - lr")]
    solution.source += f"\n    {body}\n    x = x - lr"
    demo = _cell(f"x = np.zeros(2)\nlr = 0.1\n{body}")
    nb = nbformat.v4.new_notebook(cells=[solution, demo])
    assert scan_notebook(nb, [answer]) == []


def test_a_renamed_copy_is_found_by_the_name_it_is_given() -> None:
    (answer,) = [a for a in all_answers() if a.name == "gradient_descent"]
    cell = _cell(
        "# def walk(g, x0, lr=0.01, step_num=100):\n"
        "#     points = [x0]\n"
        "#     return points[-1], points\n"
        "#\n"
        "# gradient_descent = walk"
    )
    (message,) = handed_out(cell, [answer])
    assert message.startswith("defines gradient_descent with a body"), message
