# nbgrader configuration of the course *Deep Learning from Scratch*.
#
# Every nbgrader command of the instructor reads this file. Run them from this
# directory (nbgrader loads ./nbgrader_config.py), or from anywhere with
#     JUPYTER_CONFIG_PATH=<repo>/graders nbgrader <command> ...
# `course-lib release` passes it explicitly (--config).
#
# Layout (all paths relative to the repository root, which is the course root):
#     solutions/<assignment>/<assignment>.ipynb     instructor source notebooks (committed)
#     chapters/<assignment>/<assignment>.ipynb      student versions (generated, committed)
#     graders/submitted/<student>/<assignment>/     collected submissions          (gitignored)
#     graders/autograded/<student>/<assignment>/    autograded submissions         (gitignored)
#     graders/feedback/<student>/<assignment>/      feedback HTML                  (gitignored)
#     graders/downloaded/<assignment>/              LMS downloads for zip_collect  (gitignored)
#     graders/gradebook.db                          default SQLite gradebook       (gitignored)
import os

c = get_config()  # noqa: F821  (injected by traitlets when nbgrader loads this file)

_GRADERS = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_GRADERS)

# --- The course ------------------------------------------------------------------------------
#: The assignments of the course, in teaching order: one notebook each, named like its folder.
#: `course-lib release` releases those whose solutions/<id>/ exists and refuses unregistered ones.
c.CourseLib.assignments = [
    "ch01_differentiation",
    "ch02_backpropagation",
    "ch03_training_techniques",
    "ch04_convolutional_networks",
    "ch05_deep_networks",
    "ch06_draw_a_digit",
]

# --- Course directory ------------------------------------------------------------------------
c.CourseDirectory.root = _ROOT
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "chapters"
c.CourseDirectory.submitted_directory = os.path.join("graders", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("graders", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("graders", "feedback")
c.CourseDirectory.solution_directory = os.path.join("graders", "solution")
c.CourseDirectory.source_with_tests_directory = os.path.join("graders", "source_with_tests")
# `nbgrader zip_collect` (submissions downloaded from an LMS) reads graders/downloaded/<assignment>/
c.ZipCollectApp.downloaded_directory = os.path.join("graders", "downloaded")

# The gradebook: SQLite next to this file unless COURSE_LIB_GRADEBOOK_URL names another
# SQLAlchemy URL, e.g. postgresql://grader@db.example.org/dlfs for a shared PostgreSQL gradebook.
c.CourseDirectory.db_url = os.environ.get(
    "COURSE_LIB_GRADEBOOK_URL",
    "sqlite:///" + os.path.join(_GRADERS, "gradebook.db"),
)

# --- Student version -------------------------------------------------------------------------
# The body between `### BEGIN SOLUTION` and `### END SOLUTION` becomes this stub.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# --- Autograding -----------------------------------------------------------------------------
# Seconds one cell may run before the grader interrupts it (the cell then scores zero and the
# rest of the notebook still runs). Quick mode (COURSE_QUICK=1) keeps every cell far below it.
c.Execute.timeout = int(os.environ.get("COURSE_LIB_CELL_TIMEOUT", "300"))

# ============================================================================================
# ROBUST GRADING SECTION (owned by the `course-lib grade` helper; exchange, course_id,
# sandboxing, late-submission policy, ...). Add its configuration below this line only.
# ============================================================================================

# Autograding exactly as `course-lib grade` does, also for plain `nbgrader autograde` and the
# formgrader's Autograde button: test cells run in the verdict process, the kernel starts with
# resource limits inside a bubblewrap sandbox where bwrap can run (no network, no view of this
# course directory, the gradebook or other submissions), and the fairness policy is applied
# after nbgrader saves the scores (ApplyFindings: a reference used at run time costs its whole
# exercise, a reach for the grader flags the notebook; see docs/grading.md). Set
# COURSE_LIB_SANDBOX=bwrap to refuse grading without the sandbox, =off to grade without it.
from course_lib.grading.execute import isolated_autograde_preprocessors  # noqa: E402
from course_lib.grading.notebook import feedback_preprocessors  # noqa: E402

c.Autograde.autograde_preprocessors = isolated_autograde_preprocessors()
c.OverwriteCells.add_missing_cells = True
# Feedback shows each test's name, points and message, never the hidden tests' source.
c.GenerateFeedback.preprocessors = feedback_preprocessors()

# SQLAlchemy 2.1 maps a bare postgresql:// URL to psycopg 3; with only psycopg2 installed (the
# `test` extra's psycopg2-binary) use that driver, so COURSE_LIB_GRADEBOOK_URL=postgresql://...
# works for plain nbgrader commands as it does for `course-lib grade`.
if c.CourseDirectory.db_url.startswith(("postgresql://", "postgres://")):
    import importlib.util as _util

    if _util.find_spec("psycopg") is None and _util.find_spec("psycopg2") is not None:
        c.CourseDirectory.db_url = (
            "postgresql+psycopg2://" + c.CourseDirectory.db_url.split("://", 1)[1]
        )
