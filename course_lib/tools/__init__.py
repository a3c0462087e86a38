"""Instructor tooling, kept apart from the lecture's concepts: the command line (``cli``), the course
runner that executes notebooks (``runner``), the benchmark (``bench``) and homework grading (``grading``, which
uses ``release``, ``submissions``, ``nbgrader_setup``, ``execute`` and ``gradebook``)."""
