# prismrec: setup · demo · test · bench · package
SHELL := /bin/bash
# Spark and Horovod talk over loopback on a single machine.
export SPARK_LOCAL_IP ?= 127.0.0.1
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.prismrec-setup
CONSTRAINTS := conf/constraints.txt
# Horovod is built from the sdist against the TensorFlow already in the venv.
HOROVOD_FLAGS := HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
	HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 CMAKE_POLICY_VERSION_MINIMUM=3.5

.PHONY: setup demo test test-fast bench package doctor clean java-check

setup: $(STAMP)

java-check:
	@v=$$(java -version 2>&1 | head -1 | sed -E 's/.*version "([0-9]+).*/\1/'); \
	if [ "$$v" != "17" ]; then \
	  echo "prismrec needs Java 17 for Spark 3.5 (found: '$${v:-none}')."; \
	  echo "Fix: apt-get install -y openjdk-17-jre-headless  (or set JAVA_HOME to a JDK 17)"; \
	  exit 1; fi

$(STAMP): pyproject.toml $(CONSTRAINTS) | java-check
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required: install python3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24" "setuptools>=68,<75" wheel "cmake>=3.25,<4"
	$(PIP) install -q -c $(CONSTRAINTS) tensorflow-cpu keras numpy pyarrow pandas protobuf \
	  pyspark petastorm pyyaml matplotlib cloudpickle psutil h5py fsspec mlflow-skinny optuna faiss-cpu \
	  pytest nbclient nbformat ipykernel duckdb xxhash venv-pack import-linter
	$(HOROVOD_FLAGS) $(PIP) install -q --no-build-isolation -c $(CONSTRAINTS) horovod
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) -m prismrec.cli doctor
	touch $(STAMP)

doctor: setup
	$(VENV)/bin/prismrec doctor

demo: setup
	$(VENV)/bin/prismrec demo --conf conf/local.yaml

test: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests -q

test-fast: setup
	$(PY) -m pytest tests -q -m "unit"

bench: setup
	$(PY) bench/preprocess.py
	$(PY) bench/train.py
	$(PY) bench/quality.py
	$(PY) bench/movielens.py

# dist/prismrec-*.whl, and dist/prismrec-env.tar.gz for `spark-submit --archives ...#environment`:
# a fresh venv with the pins and the wheel (venv-pack refuses editable installs, so not .venv),
# packed relocatable. Its python links to PACK_PYTHON, which must exist at that path on the nodes.
# The venv is made by PACK_PYTHON itself rather than relinked with venv-pack's --python-prefix:
# venv-pack 0.2.0 rewrites link targets by string prefix, so .../bin/python3.11 becomes
# .../bin/python3.113.11 (https://github.com/jcrist/venv-pack/blob/0.2.0/venv_pack/core.py#L571-L583).
PACK_VENV := build/pack-venv
PACK_PYTHON ?= /usr/bin/python3.11
package: setup
	rm -rf dist $(PACK_VENV)
	$(PIP) wheel --no-deps --no-build-isolation -w dist .
	$(PACK_PYTHON) -m venv $(PACK_VENV)
	$(PACK_VENV)/bin/pip install -q --upgrade "pip>=24" "setuptools>=68,<75" wheel "cmake>=3.25,<4"
	$(PACK_VENV)/bin/pip install -q -c $(CONSTRAINTS) tensorflow-cpu keras numpy pyarrow pandas protobuf \
	  petastorm pyyaml matplotlib cloudpickle psutil h5py fsspec mlflow-skinny optuna faiss-cpu
	$(HOROVOD_FLAGS) $(PACK_VENV)/bin/pip install -q --no-build-isolation -c $(CONSTRAINTS) horovod
	$(PACK_VENV)/bin/pip install -q --no-deps dist/prismrec-*.whl
	# The cluster's Spark provides PySpark (Petastorm's requirement pulls one in); cmake built Horovod.
	$(PACK_VENV)/bin/pip uninstall -q -y pyspark py4j cmake
	$(VENV)/bin/venv-pack -p $(PACK_VENV) -o dist/prismrec-env.tar.gz --force
	@ls -lh dist

clean:
	rm -rf output data dist build .pytest_cache
