"""Release readiness: the wheel and sdist build, pass ``twine check``, install into a clean venv
and work there; the version is single-sourced; the public API is fully annotated."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

import aiowake

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd: str | Path, cwd: Path = ROOT) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=240, check=False
    )
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend (hatchling) is in the test dependencies; the tests must
    # not need the network beyond what `make test` already installed.
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    return out


def test_wheel_and_sdist_are_built_with_the_single_sourced_version(dist: Path) -> None:
    names = sorted(p.name for p in dist.iterdir())
    assert names == [
        f"aiowake-{aiowake.__version__}-py3-none-any.whl",
        f"aiowake-{aiowake.__version__}.tar.gz",
    ]


@pytest.mark.timeout(240)
def test_twine_check_passes(dist: Path) -> None:
    out = run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
    assert out.count("PASSED") == 2, out


def test_wheel_holds_the_package_and_its_type_marker_only(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "aiowake/py.typed" in names
    assert "aiowake/__init__.py" in names
    top = {n.split("/")[0] for n in names}
    assert top == {"aiowake", f"aiowake-{aiowake.__version__}.dist-info"}, top


def test_sdist_holds_sources_tests_and_changelog(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    prefix = f"aiowake-{aiowake.__version__}/"
    with tarfile.open(sdist) as tar:
        names = {n.removeprefix(prefix) for n in tar.getnames()}
    for expected in ("aiowake/py.typed", "pyproject.toml", "README.md", "CHANGELOG.md"):
        assert expected in names
    assert any(n.startswith("tests/") for n in names)


@pytest.mark.timeout(240)
def test_wheel_installs_into_a_clean_venv_and_works(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", wheel)
    check = textwrap.dedent(
        """
        import asyncio, importlib.metadata, sys, aiowake
        assert importlib.metadata.version("aiowake") == aiowake.__version__
        requires = importlib.metadata.requires("aiowake") or []
        assert all("extra ==" in r and "uvloop" in r for r in requires), requires  # no runtime deps
        with aiowake.Waker() as w:
            w.wake()
            assert w.drain()

        async def main():
            ev = aiowake.Event()
            with aiowake.Dispatcher() as d:
                d.call_soon_threadsafe(ev.set)
                return await asyncio.wait_for(ev.wait(), 10)

        assert asyncio.run(main()) is True
        print(aiowake.__file__)
        """
    )
    # Run outside the checkout, so that the installed copy is the one imported.
    where = run(python, "-I", "-c", check, cwd=tmp_path).strip()
    assert Path(where).is_relative_to(venv), where


def public_callables() -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    for name in aiowake.__all__:
        obj = getattr(aiowake, name)
        if inspect.isfunction(obj):
            found.append((name, obj))
        elif inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr not in ("__init__", "__enter__", "__exit__"):
                    continue
                if isinstance(member, staticmethod | classmethod):
                    member = member.__func__
                if isinstance(member, property):
                    member = member.fget
                if inspect.isfunction(member):
                    found.append((f"{name}.{attr}", member))
    return found


@pytest.mark.parametrize(("name", "fn"), public_callables(), ids=lambda v: str(v))
def test_public_api_is_fully_annotated(name: str, fn: object) -> None:
    """What ``pyright --verifytypes`` checks first: every parameter and return annotated (mypy
    --strict over the package, in ``make test``, checks the annotations are right)."""
    assert callable(fn)
    sig = inspect.signature(fn)
    missing = [
        p.name
        for p in sig.parameters.values()
        if p.annotation is inspect.Parameter.empty and p.name not in ("self", "cls")
    ]
    assert not missing, f"{name}: unannotated parameters {missing}"
    assert sig.return_annotation is not inspect.Signature.empty, f"{name}: no return annotation"


def test_version_is_single_sourced() -> None:
    """Only aiowake/_version.py spells the version; pyproject reads it from there."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'path = "aiowake/_version.py"' in pyproject
    hits = [
        p.relative_to(ROOT)
        for p in (ROOT / "aiowake").glob("*.py")
        if f'"{aiowake.__version__}"' in p.read_text()
    ]
    assert hits == [Path("aiowake/_version.py")], hits
    assert f"## [{aiowake.__version__}]" in (ROOT / "CHANGELOG.md").read_text()
    assert os.sep not in aiowake.__version__
