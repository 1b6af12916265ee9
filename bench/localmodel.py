# Shared by the benchmarks: a throwaway local-model controller in a temporary directory,
# always torn down, and the juju command bound to it.
import contextlib
import os
import shutil
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JUJU = os.path.join(REPO, "sandbox", "bin", "juju")


def juju(*args, check=True):
    return subprocess.run([JUJU, *args], capture_output=True, text=True, check=check)


@contextlib.contextmanager
def controller(model="bench"):
    """Bootstrap a private controller with one model; kill it and remove its state after."""
    root = tempfile.mkdtemp(prefix="jsbench-")
    old = os.environ.get("JUJU_SANDBOX_DIR")
    os.environ["JUJU_SANDBOX_DIR"] = root
    try:
        juju("bootstrap")
        juju("add-model", model)
        yield
    finally:
        juju("kill-controller", "--no-prompt", check=False)
        shutil.rmtree(root, ignore_errors=True)
        if old is None:
            os.environ.pop("JUJU_SANDBOX_DIR", None)
        else:
            os.environ["JUJU_SANDBOX_DIR"] = old
