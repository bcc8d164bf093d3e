"""Runs ``hyperserve`` from another checkout (a git worktree of an earlier commit) with this
install's compiled extension, so that one run can measure before and after a change:

  git worktree add /tmp/hyperserve-main <commit>
  HYPERSERVE_BASELINE=/tmp/hyperserve-main python -m hyperserve.bench.wrk_compare \
      --servers hyperserve,hyperserve-baseline --rounds 5

  HYPERSERVE_BASELINE=/tmp/hyperserve-main python bench/peers/baseline.py --module hyperserve.bench.predict_inprocess

Only valid while cpp_ext/ is the same in both, or this one only adds to it (the extension is not
rebuilt).

It runs that checkout with ``python -S`` and PYTHONPATH (this package, then the site-packages):
without site, this install's editable finder never maps ``hyperserve`` back to this checkout, and
processes the baseline spawns (a batch job's workers) inherit both, so they run the baseline too."""

import os
import site
import sys
import tempfile
from pathlib import Path


def main() -> None:
    checkout = Path(os.environ["HYPERSERVE_BASELINE"]).resolve()
    import hyperserve._native as native  # this install's build

    package = Path(tempfile.mkdtemp(prefix="hyperserve-baseline-")) / "hyperserve"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("server", "handlers", "bench"):
        (package / name).symlink_to(checkout / name)
    (package / Path(native.__file__).name).symlink_to(native.__file__)
    module, args = "hyperserve.server", sys.argv[1:]
    if args[:1] == ["--module"]:  # another entry point of that checkout, e.g. hyperserve.bench.predict_inprocess
        module, args = args[1], args[2:]
    path = os.pathsep.join([str(package.parent), *site.getsitepackages()])
    os.execve(sys.executable, [sys.executable, "-S", "-m", module, *args], {**os.environ, "PYTHONPATH": path})


if __name__ == "__main__":
    main()
