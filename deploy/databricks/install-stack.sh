#!/bin/bash
# Cluster init script for prismrec on Databricks Runtime 15.4 LTS ML (Spark 3.5.0, Python 3.11).
# The runtime provides Spark, Java and Python; it ships TensorFlow 2.16 with Keras 3, which breaks
# horovod.tensorflow, so this script installs the pinned TensorFlow 2.15.1 / Keras 2.15 and then
# rebuilds Horovod 0.28.1 against it with the same flags as the Makefile (Gloo + TensorFlow, no MPI).
# It runs on the driver and on every worker before the job's wheel is installed.
set -euo pipefail
PIP=/databricks/python/bin/pip
# The versions of conf/constraints.txt that the runtime does not already match.
$PIP install -q "tensorflow-cpu==2.15.1" "keras==2.15.0" "tensorboard==2.15.2" "tensorflow-estimator==2.15.0" \
  "numpy==1.26.4" "pandas==2.2.3" "pyarrow==14.0.2" "protobuf==4.25.8" "petastorm==0.13.1" \
  "h5py==3.12.1" "fsspec==2024.10.0" "cloudpickle==3.1.1" "psutil==6.1.1" "pyyaml==6.0.2" \
  "cmake>=3.25,<4" wheel
$PIP uninstall -y horovod
HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 CMAKE_POLICY_VERSION_MINIMUM=3.5 \
  $PIP install -q --no-build-isolation --no-cache-dir "horovod==0.28.1"
/databricks/python/bin/python -c "import horovod.tensorflow as hvd, tensorflow as tf; \
assert hvd.gloo_built() and tf.__version__.startswith('2.15'), 'Horovod/TensorFlow build check failed'"
