"""Build the Cython core of fasttcp.

Switches (environment variables):
  FASTTCP_ANNOTATE=1  write cython -a HTML next to each .pyx (inspect the hot loops)
  FASTTCP_DEBUG=1     build with -O0 -g and Cython bounds checks on, for gdb/valgrind
"""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTTCP_DEBUG") == "1"
ANNOTATE = os.environ.get("FASTTCP_ANNOTATE") == "1"

if DEBUG:
    cflags = ["-O0", "-g3"]
else:
    # -O3 lets gcc vectorise the checksum accumulation loop; no -march=native so
    # the wheel runs on any x86-64/aarch64 machine.
    cflags = ["-O3", "-fno-strict-aliasing"]

MODULES = ["addr", "csum", "seq", "wire", "segment", "batch", "table", "endpoint", "capture", "tracker"]

extensions = [
    Extension(
        f"fasttcp._core.{name}",
        [f"fasttcp/_core/{name}.pyx"],
        include_dirs=[np.get_include(), "fasttcp/_core"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=cflags,
    )
    for name in MODULES
]

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives, annotate=ANNOTATE),
)
