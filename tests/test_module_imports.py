"""Every module imports on its own, first: an import cycle that only an import order hides (a
package's `__init__` pulling a sibling that imports back) fails here, whatever the suite's order."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

_CHECK = """
import importlib, pkgutil, sys
import portico
names = [
    m.name
    for m in pkgutil.walk_packages(portico.__path__, "portico.")
    if ".migrations" not in m.name and not m.name.endswith("__main__")
]
failed = []
for name in names:
    for loaded in [k for k in sys.modules if k == "portico" or k.startswith("portico.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failed.append(f"{name}: {exc}")
print(len(names))
print("\\n".join(failed))
"""


def test_every_module_imports_first() -> None:
    r = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    count, _, failed = r.stdout.partition("\n")
    assert int(count) > 150
    assert failed.strip() == "", failed
