"""The command asks numpy's OpenBLAS for one thread; a program importing fasttcp does not."""
import os
import subprocess
import sys

import pytest

from fasttcp._startup import is_command

PY = sys.executable

# what pip's console-script wrapper for `fasttcp` does, plus a probe: what numpy's BLAS
# was given and how many threads the process runs once numpy is loaded
WRAPPER = """import sys
from fasttcp.cli.main import main
import os, numpy
print(os.environ.get("OPENBLAS_NUM_THREADS"), len(os.listdir("/proc/self/task")))
"""
# a user's own program that imports the library and happens to be called fasttcp
USER_PROGRAM = """import os, fasttcp, numpy
print(os.environ.get("OPENBLAS_NUM_THREADS"), len(os.listdir("/proc/self/task")))
"""


@pytest.fixture
def scripts(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "fasttcp").write_text(WRAPPER)
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "fasttcp").write_text(USER_PROGRAM)
    (tmp_path / "dir" / "fasttcp").mkdir(parents=True)
    return tmp_path


def test_console_script_is_the_command(scripts):
    wrapper = str(scripts / "bin" / "fasttcp")
    assert is_command([wrapper, "bench"], ["/usr/bin/python3", wrapper, "bench"])


@pytest.mark.parametrize("name", ["own/fasttcp", "dir/fasttcp", "missing/fasttcp"])
def test_other_programs_called_fasttcp_are_not(scripts, name):
    path = str(scripts / name)
    assert not is_command([path], ["python", path])


@pytest.mark.parametrize(("orig", "expected"), [
    (["python", "-m", "fasttcp", "analyze"], True),
    (["python", "-mfasttcp"], True),
    (["python", "-m", "fasttcp.__main__"], True),
    (["python", "-X", "importtime", "-W", "error", "-O", "-m", "fasttcp"], True),
    (["python", "-Xdev", "-Werror", "-m", "fasttcp"], True),
    (["python", "-Bm", "fasttcp"], True),
    (["python", "-OOm", "fasttcp"], True),
    (["python", "-Im", "fasttcp"], True),
    (["python", "-sEmfasttcp"], True),
    (["python", "-bW", "error", "-m", "fasttcp"], True),
    (["python", "--check-hash-based-pycs", "always", "-m", "fasttcp"], True),
    (["python", "-X", "-m", "fasttcp"], False),          # "-m" is -X's value; "fasttcp" the script
    (["python", "-m", "fasttcpx"], False),
    (["python", "-m", "fasttcp.cli"], False),
    (["python", "-m", "pytest", "fasttcp"], False),
    (["python", "-c", "import fasttcp", "-m", "fasttcp"], False),
    (["python", "-Bc", "-1", "-m", "fasttcp"], False),
    (["python", "--", "-m", "fasttcp"], False),
    (["python", "-", "-m", "fasttcp"], False),
    (["python", "tool.py", "-m", "fasttcp"], False),
    (["python", "-m"], False),
    (["python"], False),
    ([], False),
])
def test_python_dash_m(orig, expected):
    assert is_command(["-m"], orig) is expected


@pytest.mark.parametrize("argv", [[], [""], [None], [b"fasttcp"]])
def test_odd_argv_is_not_the_command(argv):
    assert not is_command(argv, [])


def _env(**extra):
    # no thread count of the user's: the default each test is about
    drop = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


def _run(args, **env):
    out = subprocess.run(args, env=_env(**env), capture_output=True, text=True, timeout=60, check=True)
    value, threads = out.stdout.split()
    return value, int(threads)


def test_command_loads_numpy_with_one_blas_thread(scripts):
    assert _run([PY, str(scripts / "bin" / "fasttcp")]) == ("1", 1)


def test_library_import_keeps_numpy_default(scripts):
    for args in ([PY, "-c", USER_PROGRAM], [PY, str(scripts / "own" / "fasttcp")]):
        value, threads = _run(args)
        assert value == "None"
        # numpy's OpenBLAS starts a thread per CPU it may use: more than one where there are several
        if len(os.sched_getaffinity(0)) > 1:
            assert threads > 1


@pytest.mark.parametrize("variable", ["OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"])
def test_users_choice_is_kept(scripts, variable):
    value, _ = _run([PY, str(scripts / "bin" / "fasttcp")], **{variable: "2"})
    assert value == ("2" if variable == "OPENBLAS_NUM_THREADS" else "None")


def test_numpy_loaded_first_is_left_alone(scripts):
    # once numpy is loaded its threads exist: the variable would only mislead children
    code = ("import sys, numpy; sys.argv[0] = " + repr(str(scripts / "bin" / "fasttcp")) + "\n"
            + "import fasttcp\n" + WRAPPER)
    value, _ = _run([PY, "-c", code])
    assert value == "None"


def test_python_dash_m_fasttcp_is_the_command():
    # `python -m fasttcp` loads the package (and numpy) before its __main__ runs, with
    # sys.argv[0] still "-m"; only sys.orig_argv says which module
    code = ("import sys; sys.argv[0] = '-m'; sys.orig_argv = ['python', '-OO', '-X', 'dev', '-m', 'fasttcp']\n"
            + USER_PROGRAM)
    assert _run([PY, "-c", code]) == ("1", 1)
