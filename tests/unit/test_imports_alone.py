"""Every module of the lower layers imports on its own, first, in a fresh interpreter (the
CLI imports some lazily, where a cycle hidden by the usual import order would break it)."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import importlib, pkgutil, sys
import strom
failed = []
for package in ("config", "protocol", "security", "storage"):
    base = importlib.import_module("strom." + package)
    names = [m.name for m in pkgutil.walk_packages(base.__path__, base.__name__ + ".")]
    for name in [base.__name__, *names]:
        for loaded in [k for k in sys.modules if k.startswith("strom.")]:
            del sys.modules[loaded]
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed.append(f"{name}: {exc!r}")
print("\\n".join(failed))
"""


def test_each_module_imports_first() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "", done.stdout
