# The instructor's JupyterLab (`./course.sh instructor`) reads this file after the course's own
# graders/nbgrader_config.py (both are on JUPYTER_CONFIG_PATH). It adds what only a local
# formgrader needs: an exchange folder inside the course (the default, /srv/nbgrader/exchange,
# exists only on a JupyterHub set up for nbgrader).
import os

c = get_config()  # noqa: F821  (injected by traitlets when nbgrader loads this file)

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
c.Exchange.root = os.path.join(_ROOT, "graders", "exchange")
