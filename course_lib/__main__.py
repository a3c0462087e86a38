"""``python -m course_lib <command>``: the course's command line (``course_lib/tools/cli.py``)."""

import sys

from course_lib.tools.cli import main

sys.exit(main())
