"""The pinned stack, checked at import time and by ``prismrec doctor``.

Reads installed distribution metadata only, so the check costs milliseconds and
never imports TensorFlow, Horovod or Spark.
"""
from __future__ import annotations

from importlib import metadata

PIN_FIX = "run `make setup` (it installs the pins in conf/constraints.txt into .venv)"


class StackError(ImportError):
    """The installed stack does not match the pins prismrec is proven on."""


def installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def major_minor(version: str) -> tuple[int, int]:
    parts = (version.split(".") + ["0", "0"])[:2]
    return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)


def stack_problems() -> list[str]:
    """Return one line per fatal mismatch, each with its fix; empty when the stack is usable."""
    problems = []
    keras = installed_version("keras")
    if keras is not None and major_minor(keras)[0] >= 3:
        problems.append(
            f"keras {keras} is installed, but Horovod's Keras integration needs Keras 2 "
            f"(TensorFlow 2.15 ships Keras 2.15). Fix: pip install 'keras==2.15.0' or {PIN_FIX}."
        )
    pyarrow = installed_version("pyarrow")
    if pyarrow is not None and major_minor(pyarrow)[0] >= 15:
        problems.append(
            f"pyarrow {pyarrow} is installed, but Petastorm 0.13.1 imports pyarrow.filesystem, "
            f"removed in pyarrow 15. Fix: pip install 'pyarrow==14.0.2' or {PIN_FIX}."
        )
    return problems


def guard() -> None:
    problems = stack_problems()
    if problems:
        raise StackError("prismrec cannot run on this stack:\n  " + "\n  ".join(problems))


# Expected version prefixes; conf/constraints.txt holds the exact pins (a test keeps them in step).
EXPECTED = {
    "tensorflow-cpu": "2.15.", "keras": "2.15.", "horovod": "0.28.1", "pyspark": "3.5.",
    "petastorm": "0.13.1", "pyarrow": "14.", "numpy": "1.26.", "pandas": "2.2.", "protobuf": "4.25.",
}
