"""The command asks numpy's OpenBLAS for one thread; a program importing fasttcp does not."""
import os
import subprocess
import sys

import pytest

from fasttcp._startup import is_command

PY = sys.executable


@pytest.mark.parametrize(("argv", "orig", "expected"), [
    (["/usr/local/bin/fasttcp", "bench"], ["/usr/bin/python3", "/usr/local/bin/fasttcp", "bench"], True),
    (["-m"], ["python", "-m", "fasttcp", "analyze"], True),
    (["-m"], ["python", "-mfasttcp"], True),
    (["-m"], ["python", "-X", "importtime", "-W", "error", "-O", "-m", "fasttcp"], True),
    (["-m"], ["python", "-m", "fasttcpx"], False),
    (["-m"], ["python", "-m", "pytest", "fasttcp"], False),
    (["-c"], ["python", "-c", "import fasttcp", "-m", "fasttcp"], False),
    (["tool.py"], ["python", "tool.py", "-m", "fasttcp"], False),
    (["/opt/fasttcp-tools/run"], ["python", "/opt/fasttcp-tools/run"], False),
    ([], [], False),
    (["-m"], ["python", "-m"], False),
])
def test_is_command(argv, orig, expected):
    assert is_command(argv, orig) is expected


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env.update(extra)
    return env


# each child prints what numpy's BLAS was given and how many threads the process runs
_PROBE = ("import os; import fasttcp, numpy; "
          "print(os.environ.get('OPENBLAS_NUM_THREADS'), len(os.listdir('/proc/self/task')))")


def test_command_loads_numpy_with_one_blas_thread():
    # the console script's argv[0] is its path, ending in "fasttcp"
    code = "import sys; sys.argv[0] = '/usr/local/bin/fasttcp'; " + _PROBE
    out = subprocess.run([PY, "-c", code], env=_env(), capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_library_import_keeps_numpy_default():
    out = subprocess.run([PY, "-c", _PROBE], env=_env(), capture_output=True, text=True, timeout=60, check=True)
    value, threads = out.stdout.split()
    assert value == "None"
    # numpy's OpenBLAS starts a thread per CPU it may use: more than one where there are several
    if len(os.sched_getaffinity(0)) > 1:
        assert int(threads) > 1


def test_users_choice_is_kept():
    code = "import sys; sys.argv[0] = 'fasttcp'; " + _PROBE
    out = subprocess.run([PY, "-c", code], env=_env(OPENBLAS_NUM_THREADS="2"), capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.split()[0] == "2"


def test_python_dash_m_fasttcp_is_the_command():
    # `python -m fasttcp` loads the package (and numpy) before its __main__ runs, with
    # sys.argv[0] still "-m"; only sys.orig_argv says which module
    code = "import sys; sys.argv[0] = '-m'; sys.orig_argv = ['python', '-X', 'dev', '-m', 'fasttcp']; " + _PROBE
    out = subprocess.run([PY, "-c", code], env=_env(), capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["1", "1"]
