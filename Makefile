# Every target is a thin wrapper over `python -m course_lib <command>`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: course test lab demo bench release site grade grade-manual data drift drift-lowest clean
JOBS ?= 1

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -c requirements-lock.txt -e '.[dev,instructor]'
	touch $(STAMP)

course: $(STAMP)  ## execute every notebook (fast profile), write build/course/
	$(PY) -m course_lib course

test: $(STAMP)  ## unit tests + every notebook under nbval
	$(PY) -m course_lib test

lab: $(STAMP)  ## JupyterLab on notebooks/
	$(PY) -m course_lib lab

demo: $(STAMP)  ## prepare a live lecture: warm every notebook's cache (full profile on a GPU), time a warm run
	$(PY) -m course_lib demo

bench: $(STAMP)  ## time the input pipeline (course vs DataLoader) and every notebook; build/bench/
	$(PY) -m course_lib bench --notebooks

release: $(STAMP)  ## the student bundle (build/release/ssl-course/ and .zip: no solutions, no hidden tests)
	$(PY) -m course_lib release

site: $(STAMP)  ## the course site (build/site/: static HTML, no answers) from the notebooks make course executed
	$(PY) -m course_lib site

grade: $(STAMP)  ## autograde: make grade SUBMISSIONS=folder JOBS=2 [CLUSTER=local:2] (scores.csv, feedback, gradebook in grades/)
	$(PY) -m course_lib grade $(SUBMISSIONS) --jobs $(JOBS) $(if $(CLUSTER),--cluster $(CLUSTER))

grade-manual: $(STAMP)  ## record points given by hand: make grade-manual MANUAL=filled-copy-of-manual_grading.csv
	$(PY) -m course_lib grade-manual $(MANUAL)

data: $(STAMP)  ## rebuild data/fashion_mnist_subset.npz from the official files
	$(PY) -m course_lib build-data

drift: $(STAMP)  ## the unit, hang and browser tests in build/drift/newest/ on the newest versions pyproject allows (no lock)
	$(PY) -m course_lib drift

drift-lowest: $(STAMP)  ## the same at every requirement's lower bound (downloads several GB: torch 2.4 and its CUDA wheels)
	$(PY) -m course_lib drift --lowest

clean:  ## delete build/ (caches, executed notebooks); never grades: grades/ and an older build/grading/ stay
	@if [ -d build/grading ]; then \
		echo "keeping build/grading/ (grades)"; find build -mindepth 1 -maxdepth 1 ! -name grading -exec rm -rf {} +; \
	else rm -rf build; fi
