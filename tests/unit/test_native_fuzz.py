"""The native parsers (instances, base64, whole HTTP requests, the JSON key scan) under libFuzzer with AddressSanitizer
and UBSan, for a bounded time.

Needs clang-14 and libclang-rt-14-dev (scripts/test.sh installs them); any crash, sanitizer
report or broken invariant fails the test, and the reproducer is left in build/fuzz/.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

SECONDS = os.environ.get("HYPERSERVE_FUZZ_SECONDS", "20")


@pytest.mark.skipif(shutil.which("clang++-14") is None and shutil.which("clang++") is None,
                    reason="needs clang++ with libFuzzer (apt-get install clang-14 libclang-rt-14-dev)")
@pytest.mark.timeout(300)
def test_native_parsers_survive_fuzzing():
    out = subprocess.run(["bash", str(ROOT / "scripts" / "fuzz.sh"), SECONDS], capture_output=True, text=True,
                         timeout=280, cwd=str(ROOT))
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "ERROR: AddressSanitizer" not in log and "runtime error" not in log, log[-4000:]
    assert log.count("Done ") == 4  # one per target: instances, base64, http_request, json_scan
