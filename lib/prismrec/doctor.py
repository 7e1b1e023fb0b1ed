"""``prismrec doctor``: report the stack's versions and check what prismrec relies on."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from prismrec._versions import EXPECTED, PIN_FIX, installed_version, stack_problems


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def java_major() -> tuple[int | None, str]:
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None, "no java on PATH or JAVA_HOME"
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    return (int(match.group(1)) if match else None), out.splitlines()[0] if out else java


def check_horovod() -> Check:
    try:
        import horovod.tensorflow as hvd  # noqa: F401  (import proves the TF extension was built)
    except Exception as error:  # any failure here means the extension is unusable
        return Check("horovod built with TensorFlow", False, f"import horovod.tensorflow failed: {error}",
                     "rebuild: HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 "
                     "pip install --no-build-isolation --no-cache-dir --force-reinstall horovod==0.28.1 "
                     "(after TensorFlow 2.15.1), or " + PIN_FIX)
    if not hvd.gloo_built():
        return Check("horovod built with Gloo", False, "horovod.tensorflow.gloo_built() is False",
                     "rebuild Horovod with HOROVOD_WITH_GLOO=1 (see docs/install.md)")
    return Check("horovod built with TensorFlow and Gloo", True, "tensorflow + gloo extensions present")


def checks() -> list[Check]:
    results = []
    for dist, prefix in EXPECTED.items():
        version = installed_version(dist)
        ok = version is not None and version.startswith(prefix)
        results.append(Check(f"{dist} {prefix}*", ok, version or "not installed",
                             "" if ok else f"pip install -c conf/constraints.txt {dist}, or {PIN_FIX}"))
    problems = stack_problems()
    results.append(Check("keras 2.x and pyarrow < 15", not problems, "; ".join(problems) or "ok",
                         "see the message" if problems else ""))
    major, detail = java_major()
    results.append(Check("java 17", major == 17, detail,
                         "" if major == 17 else "apt-get install -y openjdk-17-jre-headless, "
                                                "or point JAVA_HOME at a JDK 17"))
    results.append(check_horovod())
    return results


def report() -> int:
    """Print every check; return 0 when all pass, 1 otherwise."""
    results = checks()
    for check in results:
        print(f"[{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
        if not check.ok:
            print(f"       fix: {check.fix}")
    failed = sum(not c.ok for c in results)
    print("doctor: all checks passed" if not failed else f"doctor: {failed} check(s) failed")
    return 0 if not failed else 1
