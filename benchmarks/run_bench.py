"""Same as ``course-lib bench``: ``python benchmarks/run_bench.py [--quick] [...]``."""

import sys

from course_lib.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
