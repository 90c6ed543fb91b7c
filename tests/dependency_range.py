"""The dependency ranges pyproject.toml declares, and the oldest release of one installed apart for isolated tests.

A release goes into its own `pip install --target` folder (the package and exactly what that release requires;
whatever else a test needs, such as torch, comes from the running environment), kept under the user's cache folder
between runs and fetched through pip's cache, so only the first run on a machine downloads it. The transformers
folder tests (tests/convert) and the huggingface_hub 1.x downloads (tests/hub/test_httplib.py) use it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
INSTALL_TIMEOUT_S = 600


def declared_range(package: str) -> SpecifierSet:
    """The version range of one dependency in pyproject.toml's [project] dependencies."""
    block = re.search(r"^dependencies = \[(.*?)^\]", PYPROJECT.read_text(), flags=re.MULTILINE | re.DOTALL)
    assert block, f"no [project] dependencies list in {PYPROJECT}"
    for line in re.findall(r'^\s*"([^"]+)",', block.group(1), flags=re.MULTILINE):
        requirement = Requirement(line)
        if requirement.name.replace("_", "-").lower() == package.replace("_", "-").lower():
            return requirement.specifier
    raise AssertionError(f"{package} is not among the dependencies in {PYPROJECT}")


def oldest_supported(package: str) -> str:
    lower = [s.version for s in declared_range(package) if s.operator == ">="]
    assert len(lower) == 1, f"{package} needs one `>=` lower bound in {PYPROJECT}"
    return lower[0]


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmv-tests"


def installed_release(package: str, version: str) -> Path:
    """A folder holding package==version and its requirements, installed on first use."""
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    target = cache_root() / f"{package}-{version}-{python}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    command = [
        *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-conflicts"),
        "--no-compile",  # the isolated process compiles the few modules it imports, once
        *("--timeout", "30", "--target", str(staging), f"{package}=={version}"),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail(f"pip did not install {package}=={version} within {INSTALL_TIMEOUT_S}s: is PyPI reachable?")
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail(
            f"cannot install {package}=={version}, which the isolated-process tests run against (the oldest "
            f"release pyproject.toml supports; it needs PyPI or pip's cache): {done.stderr.strip()[-1500:]}"
        )
    try:
        staging.rename(target)  # complete or absent, even with two test runs at once
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # the other run got there first
    return target
