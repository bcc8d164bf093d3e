"""Runs ``hyperserve`` from another checkout (a git worktree of an earlier commit) with this
install's compiled extension, so that one run can measure before and after a change:

  git worktree add /tmp/hyperserve-main <commit>
  HYPERSERVE_BASELINE=/tmp/hyperserve-main python -m hyperserve.bench.wrk_compare \
      --servers hyperserve,hyperserve-baseline --rounds 5

  HYPERSERVE_BASELINE=/tmp/hyperserve-main python bench/peers/baseline.py --module hyperserve.bench.predict_inprocess

Only valid while cpp_ext/ is the same in both (the extension is not rebuilt)."""

import os
import runpy
import sys
import tempfile
from pathlib import Path


def main() -> None:
    checkout = Path(os.environ["HYPERSERVE_BASELINE"]).resolve()
    import hyperserve._native as native  # this install's build, loaded before the finder is dropped

    package = Path(tempfile.mkdtemp(prefix="hyperserve-baseline-")) / "hyperserve"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("server", "handlers", "bench"):
        (package / name).symlink_to(checkout / name)
    (package / Path(native.__file__).name).symlink_to(native.__file__)
    # The editable install's finder would map hyperserve.* back to this checkout: drop it.
    sys.meta_path = [f for f in sys.meta_path if "Redirecting" not in type(f).__name__]
    for name in [m for m in sys.modules if m == "hyperserve" or m.startswith("hyperserve.")]:
        del sys.modules[name]
    sys.path.insert(0, str(package.parent))
    module, args = "hyperserve.server", sys.argv[1:]
    if args[:1] == ["--module"]:  # another entry point of that checkout, e.g. hyperserve.bench.predict_inprocess
        module, args = args[1], args[2:]
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__")


if __name__ == "__main__":
    main()
