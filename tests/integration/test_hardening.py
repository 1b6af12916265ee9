"""The shipped binaries are built hardened: PIE, full RELRO (GNU_RELRO + BIND_NOW),
stack protector and FORTIFY_SOURCE (checked with readelf on build/charm and build/sandbox)."""

import subprocess

import pytest

from conftest import REPO

BINARIES = ["build/charm/dispatch", "build/charm/bin/pg-agent",
            "build/sandbox/jujuc", "build/sandbox/unit-init"]


def readelf(*args):
    return subprocess.run(["readelf", "-W", *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture(autouse=True, scope="module")
def controller():
    """No local model needed here: override the session fixture."""
    yield None


@pytest.mark.parametrize("rel", BINARIES)
def test_binary_is_hardened(rel):
    path = REPO / rel
    assert path.exists(), f"{rel} missing: run `make build`"
    header = readelf("-h", str(path))
    assert "DYN (Position-Independent Executable file)" in header, f"{rel} is not PIE"
    segments = readelf("-l", str(path))
    assert "GNU_RELRO" in segments, f"{rel} has no RELRO segment"
    dynamic = readelf("-d", str(path))
    assert "BIND_NOW" in dynamic or "FLAGS_1" in dynamic and "NOW" in dynamic, \
        f"{rel} is partial RELRO (no BIND_NOW)"
    symbols = readelf("--dyn-syms", str(path))
    assert "__stack_chk_fail" in symbols, f"{rel} has no stack protector"
    assert "_chk@" in symbols.replace("__stack_chk_fail@", ""), \
        f"{rel} uses no FORTIFY_SOURCE checked functions"
