"""Build the Cython core of fasttcp.

Switches (environment variables):
  FASTTCP_ANNOTATE=1  write cython -a HTML next to each .pyx (inspect the hot loops)
  FASTTCP_DEBUG=1     build with -O0 -g and Cython bounds checks on, for gdb/valgrind
"""
import os
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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

# Small fixed-size memset/memcpy (a 152-byte parsed packet cleared per packet, keys and
# records copied) become `rep stos`/`rep movs` under gcc's generic x86-64 tuning, whose
# start-up cost is ~30 cycles on AMD cores: a quarter of the per-packet parse time.
# Inline SSE stores are a few cycles. gcc-only, x86-only flags: used when they compile.
X86_GCC_STRING_FLAGS = [
    "-mmemset-strategy=vector_loop:256:noalign,libcall:-1:noalign",
    "-mmemcpy-strategy=vector_loop:256:noalign,libcall:-1:noalign",
]


def _compiles_with(compiler, flags) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("int main(void) { return 0; }\n")
        try:
            compiler.compile([src], output_dir=tmp, extra_postargs=flags + ["-Werror"])
        except Exception:
            return False
    return True


class BuildExt(build_ext):
    """build_ext that adds the optional tuning flags the compiler accepts."""

    def build_extensions(self):
        if not DEBUG and _compiles_with(self.compiler, X86_GCC_STRING_FLAGS):
            for ext in self.extensions:
                ext.extra_compile_args = list(ext.extra_compile_args) + X86_GCC_STRING_FLAGS
        super().build_extensions()


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
    cmdclass={"build_ext": BuildExt},
)
