"""Installed like a site installs it: the sdist, the wheel, and the wheel on the system Python.

Findings of issue 19: a hand-written package list left ``annexd.aws`` and ``annexd.launch`` out
of ``pip install .`` (the daemon could not start), and Debian 12's pip (23.0.1) made an
editable install that could not import the lease function (``package_dir`` mapping).  These
tests build from a copy of the tree, so they never write into the checkout.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tomllib
import zipfile

import pytest

from localaws.master import DC_SET_READY, MasterStandIn
from localaws.pool import LocalPool
from localaws.wait import wait_for

from conftest import SECRET, SPOT_CONFIG

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The system's own Python: Debian 12's 3.11.2 with its pip 23.0.1.
SYSTEM_PYTHON = "/usr/bin/python3"
NOT_SOURCE = shutil.ignore_patterns(".*", "__pycache__", "*.pyc", "*.egg-info", "build",
                                    "dist", "demo-run")
SHARE = "share/condor-annexd"


def setuptools_table() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]


#: Import name -> source directory, for the packages whose directory is named otherwise
#: (``lambda/`` is ``annexd_lambda``, ``cfn/`` is ``annexd_cfn``).
PACKAGE_DIR: dict[str, str] = setuptools_table()["package-dir"]


def source_dir(package: str) -> str:
    """Where a top-level package's files are in the tree."""
    return PACKAGE_DIR.get(package, package)


def package_roots() -> list[str]:
    """Top-level packages of the tree, by import name (directories holding ``__init__.py``)."""
    by_directory = {directory: name for name, directory in PACKAGE_DIR.items()}
    return sorted(by_directory.get(name, name) for name in os.listdir(ROOT)
                  if os.path.isfile(os.path.join(ROOT, name, "__init__.py")))


def tree_packages() -> set[str]:
    """Every package and data directory of the tree, dotted, by import name."""
    found = set()
    for package in package_roots():
        base = os.path.join(ROOT, source_dir(package))
        for directory, subdirectories, _ in os.walk(base):
            subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
            relative = os.path.relpath(directory, base)
            found.add(package if relative == "." else f"{package}.{relative.replace(os.sep, '.')}")
    return found


def tree_files(as_installed: bool = True) -> set[str]:
    """Every file of every package in the tree (modules and data): as the wheel names it
    (under the import name), or as the tree (and the sdist) does."""
    found = set()
    for package in package_roots():
        base = os.path.join(ROOT, source_dir(package))
        prefix = package if as_installed else source_dir(package)
        for directory, subdirectories, files in os.walk(base):
            subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
            found |= {os.path.join(prefix, os.path.relpath(os.path.join(directory, name), base))
                      for name in files if not name.endswith(".pyc")}
    return found


def test_every_package_of_the_tree_is_listed_in_pyproject():
    """The list is explicit (package-dir needs it): a new folder left out of it would be left
    out of the wheel.  Data folders that hold files the code reads count as packages too
    (``annex_ec2.image``); the manual pages are data of ``condor_annex``."""
    listed = set(setuptools_table()["packages"])
    data_only = {"condor_annex.man", "condor_annex.man.man1", "condor_annex.man.man8"}
    assert sorted(tree_packages() - data_only - listed) == []
    assert sorted(listed - tree_packages()) == []
    assert {"lambda", "cfn"} <= {source_dir(p) for p in package_roots()}
    assert os.path.isfile(os.path.join(ROOT, "setup.py"))


def shared_files() -> set[str]:
    """What a site takes from the package: the config fragments and the fleet examples."""
    return {f"{SHARE}/config.d/80annexd", f"{SHARE}/config.d/85annex-jobs"} | {
        f"{SHARE}/examples/{os.path.basename(p)}"
        for p in glob.glob(os.path.join(ROOT, "examples", "*.json"))}


def copy_tree(destination: str) -> str:
    shutil.copytree(ROOT, destination, ignore=NOT_SOURCE, symlinks=True)
    return destination


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, (argv, result.stdout[-2000:], result.stderr[-2000:])
    return result


def make_venv(path: str) -> str:
    """A fresh virtualenv of the system Python with its own pip (no upgrade); its python."""
    run(SYSTEM_PYTHON, "-m", "venv", path)
    return os.path.join(path, "bin", "python")


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, str]:
    """From a copy of the tree: the sdist (``python -m build --sdist``), and the wheel as
    README's install section builds it (the system Python's own pip)."""
    work = tmp_path_factory.mktemp("dist")
    source = copy_tree(str(work / "source"))
    run(sys.executable, "-m", "build", "--sdist", "--outdir", str(work / "out"), source)
    run(SYSTEM_PYTHON, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "out"),
        source, cwd=str(work))
    [sdist] = glob.glob(str(work / "out" / "*.tar.gz"))
    [wheel] = glob.glob(str(work / "out" / "*.whl"))
    return {"sdist": sdist, "wheel": wheel}


def test_wheel_and_sdist_hold_every_package_and_data_file_of_the_tree(dist):
    expected = tree_files()
    assert {"annexd/aws/create.py", "annexd/launch/base.py", "annexd_lambda/lease.py",
            "annexd_cfn/bucket.yaml", "annexd/money/prices.json"} <= expected
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        entry_points = next(wheel.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    data = {n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n}
    assert sorted(expected - names) == []
    assert sorted(shared_files() - data) == []
    for script in ("condor_annex", "condor_annexd", "condor_annex_role_template",
                   "condor_annex_ec2"):
        assert f"\n{script} = " in "\n" + entry_points
    with tarfile.open(dist["sdist"]) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert sorted(tree_files(as_installed=False) - members) == []
    assert {"lambda/lease.py", "cfn/bucket.yaml", "setup.py", "pyproject.toml"} <= members


FIND_PACKAGES = """
import importlib.resources, importlib.util, json, sys
found = {name: importlib.util.find_spec(name).submodule_search_locations[0]
         for name in sys.argv[1:]}
found["templates"] = sorted(p.name for p in importlib.resources.files("annexd_cfn").iterdir())
print(json.dumps(found))
"""


def test_editable_install_with_debian_pip_finds_every_package(tmp_path):
    """``pip install -e .`` with Debian 12's own pip: every package resolves to the tree."""
    source = copy_tree(str(tmp_path / "source"))
    python = make_venv(str(tmp_path / "venv"))
    run(python, "-m", "pip", "install", "-q", "--no-deps", "-e", source)
    assert_editable_finds_every_package(python, source, str(tmp_path))


def assert_editable_finds_every_package(python: str, source: str, cwd: str) -> None:
    """Every top-level package imports from the tree, under its import name."""
    packages = package_roots()
    found = json.loads(run(python, "-c", FIND_PACKAGES, *packages, cwd=cwd).stdout)
    for name in packages:  # strict mode imports from a tree of links to the source files
        assert os.path.samefile(os.path.join(found[name], "__init__.py"),
                                os.path.join(source, source_dir(name), "__init__.py")), name
    assert "lease-function.yaml" in found["templates"]


@pytest.mark.parametrize("mode", ["lenient", "strict"])
def test_editable_install_with_the_newest_pip_finds_every_package(tmp_path, mode):
    """The suite's own pip (the newest the lock holds), in both of setuptools' editable
    modes, into a fresh virtualenv (``pip --python``: no pip inside it needed)."""
    source = copy_tree(str(tmp_path / "source"))
    run(sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv"))
    python = os.path.join(str(tmp_path / "venv"), "bin", "python")
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
        "--config-settings", f"editable_mode={mode}", "-e", source)
    assert_editable_finds_every_package(python, source, str(tmp_path))


def test_wheel_on_the_system_python_starts_under_a_master_and_makes_an_annex(
        dist, aws, moto_server, tmp_path):
    """The built wheel, not editable, in a fresh virtualenv of the system Python; the daemon
    started from a packaged-style configuration (the installed 80annexd dropped in) by a
    stand-in master; a create against the emulator with the installed condor_annex."""
    venv = str(tmp_path / "site")
    python = make_venv(venv)
    run(python, "-m", "pip", "install", "-q", dist["wheel"])
    pool = LocalPool(str(tmp_path / "pool")).write(moto_server.url, secret=SECRET)
    shutil.copyfile(os.path.join(venv, SHARE, "config.d", "80annexd"),
                    os.path.join(pool.config_dir, "80annexd"))
    with open(os.path.join(pool.config_dir, "81annexd-site"), "w", encoding="utf-8") as site:
        site.write(f"ANNEXD = {venv}/bin/condor_annexd\n")
    master = MasterStandIn()
    daemon = master.start("ANNEXD", python, pool.env(), str(tmp_path / "annexd.out"))
    try:
        def ready() -> bool:
            assert daemon.poll() is None, open(tmp_path / "annexd.out").read()
            return DC_SET_READY in master.commands
        wait_for(ready, "the installed daemon to report ready", timeout=60)
        created = subprocess.run(
            [os.path.join(venv, "bin", "condor_annex"), "-annex-name", "site",
             "-lease-duration", "600", "-count", "1", "-lease-function-arn", aws.lease_arn,
             "-public", pool.access_key_file, "-secret", pool.secret_key_file, SPOT_CONFIG],
            env=pool.env(), capture_output=True, text=True, timeout=120, cwd="/")
        assert created.returncode == 0, created.stderr
        assert aws.annex_resources("site")["fleets"], created.stdout
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        master.close()
