"""The wheel a user installs: what it holds, and the licences it declares.

Built for real with ``pip wheel`` from a copy of the build context (what the Dockerfile
copies), so a stale ``build/`` in the checkout cannot hide a missing file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

import pytest

from tests.test_compose import BUILD_INPUTS

ROOT = Path(__file__).resolve().parent.parent
VENDOR = "orchestrator/edge/static/vendor"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=170,
    )
    (built,) = out.glob("*.whl")
    return zipfile.ZipFile(built)


def metadata(wheel: zipfile.ZipFile) -> Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return HeaderParser().parsestr(wheel.read(name).decode())


def test_the_licences_are_declared_and_shipped(wheel: zipfile.ZipFile) -> None:
    """Our code is MIT (LICENSE); the vendored elkjs is EPL-2.0, whose notice must travel
    with it: beside the script in the package, and among the wheel's licence files."""
    meta = metadata(wheel)
    assert meta["License-Expression"] == "MIT AND EPL-2.0"
    assert meta.get_all("License-File") == ["LICENSE", f"{VENDOR}/elk.LICENSE.md"]
    names = wheel.namelist()
    (licence,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(licence).decode().startswith("MIT License")
    assert f"{VENDOR}/elk.bundled.js" in names
    elk_licence = wheel.read(f"{VENDOR}/elk.LICENSE.md").decode()
    assert elk_licence.startswith("# Eclipse Public License - v 2.0")


def test_the_wheel_holds_the_three_packages_and_nothing_else(wheel: zipfile.ZipFile) -> None:
    """The top-level names are the project's layout (``services`` and ``statecharts`` are
    fixed by it; see the README's "Licence and packaging"); tests, benchmarks and docs stay
    in the repository, and every chart document ships with its actions module."""
    top = {n.split("/", 1)[0] for n in wheel.namelist() if ".dist-info/" not in n}
    assert top == {"orchestrator", "services", "statecharts"}
    names = set(wheel.namelist())
    assert "orchestrator/py.typed" in names
    for document in (ROOT / "statecharts").glob("*.yaml"):
        assert f"statecharts/{document.name}" in names
        assert f"statecharts/{document.stem}.py" in names
    for document in (ROOT / "statecharts").glob("*.json"):
        assert f"statecharts/{document.name}" in names
    static = ROOT / "orchestrator" / "edge" / "static"
    for page in static.rglob("*"):
        if page.is_file():
            assert page.relative_to(ROOT).as_posix() in names, page
