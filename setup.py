"""Build the Cython core of fasttcp.

Switches (environment variables):
  FASTTCP_ANNOTATE=1  write cython -a HTML next to each .pyx (inspect the hot loops)
  FASTTCP_DEBUG=1     build with -O0 -g and Cython bounds checks on, for gdb/valgrind
  FASTTCP_PGO=0       skip the profile-guided build (gcc only; on by default): compile
                      once, as a plain -O3 build
  FASTTCP_SANITIZE=1  build with AddressSanitizer (-fsanitize=address -O1 -g, no profile),
                      Cython bounds checks still off so ASan watches the C the release
                      build runs. CPython is not built with ASan, so load the runtime
                      first and leave CPython's deliberate leaks alone:
                        FASTTCP_SANITIZE=1 pip install -e . --no-build-isolation
                        LD_PRELOAD=$(gcc -print-file-name=libasan.so) PYTHONMALLOC=malloc \
                        ASAN_OPTIONS=detect_leaks=0 python -m pytest tests/wire/test_fuzz.py
                      (PYTHONMALLOC=malloc gives every Python buffer its own allocation
                      with ASan's red zones around it; pymalloc packs small ones together)
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("FASTTCP_DEBUG") == "1"
ANNOTATE = os.environ.get("FASTTCP_ANNOTATE") == "1"
SANITIZE = os.environ.get("FASTTCP_SANITIZE") == "1"

if DEBUG:
    cflags = ["-O0", "-g3"]
elif SANITIZE:
    # -O1: ASan's usual level, fast enough to fuzz with and close to the real code
    cflags = ["-O1", "-g", "-fno-strict-aliasing"]
else:
    # -O3 lets gcc vectorise the checksum accumulation loop; no -march=native so
    # the wheel runs on any x86-64/aarch64 machine.
    cflags = ["-O3", "-fno-strict-aliasing"]
ldflags = []
if SANITIZE:
    cflags += ["-fsanitize=address", "-fno-omit-frame-pointer"]
    ldflags = ["-fsanitize=address"]

# The compiled modules, by layer (the folder is the layer: fasttcp/<layer>/<module>.pyx).
MODULES = [
    "wire.addr", "wire.checksum", "wire.seq", "wire.codec", "wire.segment", "wire.batch", "wire.rss",
    "table.table",
    "endpoint.endpoint",
    "tracker.tracker",
    "capture.scanner",
    "capture.records",
    "capture.mapped",
    "capture.ring",
    "capture.tx",
    "rows.writer",
    "rows.tally",
    "bench.baseline",
    "_testing",
]
# The C headers (csum_impl.h, mem_impl.h) live in fasttcp/wire; every module's C includes them
# through the .pxd files it cimports.
INCLUDE_DIRS = [np.get_include(), "fasttcp/wire"]

def _headers(name: str) -> list[str]:
    """The C headers a module's C may include: its folder's and fasttcp/wire's. Cython
    tracks only the headers a .pyx names itself, not those they include, so an edit to
    one of these would otherwise leave the module unbuilt."""
    folder = os.path.dirname(f"fasttcp/{name.replace('.', '/')}")
    return sorted(set(glob.glob(f"{folder}/*.h") + glob.glob("fasttcp/wire/*.h")))


extensions = [
    Extension(
        f"fasttcp.{name}",
        [f"fasttcp/{name.replace('.', '/')}.pyx"],
        depends=_headers(name),
        include_dirs=INCLUDE_DIRS,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
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
            compiler.compile([src], output_dir=tmp, extra_postargs=[*flags, "-Werror"])
        except Exception:
            return False
    return True


# Profile-guided optimisation (as CPython's --enable-optimizations does): compile with
# -fprofile-generate, run fasttcp.bench.pgo (a second or two of varied traffic through the
# hot loops), compile again with -fprofile-use. gcc then lays the per-packet loops out
# for the branches traffic takes. Any failure falls back to the plain build.
PGO = os.environ.get("FASTTCP_PGO", "1") != "0" and not DEBUG and not SANITIZE
PGO_USE_FLAGS = ["-fprofile-partial-training", "-Wno-missing-profile"]
# The modules compiled with the profile: the two per-packet engines, where it measured
# +3-4% (endpoint handshakes) and +8-10% (tracker packets). Not the rest: the batch
# parser came out 15-20% slower with it (gcc favoured its IPv6 branches, half the
# training's codec packets), and the others showed no difference. A profile missing
# for one of these means the training did not do its job: no profile-guided build then.
PGO_MODULES = ["endpoint", "tracker", "baseline"]      # by the module's last name
HERE = os.path.dirname(os.path.abspath(__file__))


class BuildExt(build_ext):
    """build_ext that adds the optional tuning flags the compiler accepts, compiles in
    parallel, and (gcc) builds with a profile."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            # the CPUs this process may use (not the host's), and at most 4: each -O3
            # compile of a large module takes a few hundred MB
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            self.parallel = max(1, min(cpus, 4))

    def build_extensions(self):
        if not DEBUG and _compiles_with(self.compiler, X86_GCC_STRING_FLAGS):
            for ext in self.extensions:
                ext.extra_compile_args = list(ext.extra_compile_args) + X86_GCC_STRING_FLAGS
        base = [(list(e.extra_compile_args), list(e.extra_link_args)) for e in self.extensions]
        if PGO and (self.force or not self._up_to_date()) and self.compiler.compiler_type == "unix" and \
                _compiles_with(self.compiler, ["-fprofile-generate", *PGO_USE_FLAGS]):
            try:
                self._build_with_profile(base)
                return
            except Exception as exc:          # a missing libgcov, a training error, ...
                print(f"fasttcp: profile-guided build failed ({exc}); building without a profile",
                      file=sys.stderr)
                self.force = True             # the object files are the instrumented ones
        self._set_flags(base, [], [], pgo=False)
        super().build_extensions()

    def _up_to_date(self) -> bool:
        """Every extension built after its sources changed (then nothing is rebuilt, and
        the profiled build is not redone either)."""
        for ext in self.extensions:
            out = self.get_ext_fullpath(ext.name)
            if not os.path.exists(out):
                return False
            built = os.path.getmtime(out)
            if any(os.path.getmtime(src) > built for src in [*ext.sources, *(ext.depends or [])]):
                return False
        return True

    def _set_flags(self, base, cflags, ldflags, *, pgo):
        """Flags for the PGO_MODULES (`pgo`: they are built with a profile); every other
        module gets its plain flags."""
        for ext, (c, ld) in zip(self.extensions, base, strict=True):
            mine = ext.name.rsplit(".", 1)[-1] in PGO_MODULES
            ext.extra_compile_args = c + (cflags if mine else [])
            ext.extra_link_args = ld + (ldflags if mine else [])
            ext.define_macros = [m for m in ext.define_macros if m[0] != "FASTTCP_PGO"]
            ext.define_macros.append(("FASTTCP_PGO", "1" if mine and pgo else "0"))

    def _build_with_profile(self, base):
        with tempfile.TemporaryDirectory(prefix="fasttcp-pgo-") as tmp:
            prof, stage = os.path.join(tmp, "profile"), os.path.join(tmp, "stage")
            # 1. instrumented build into a staging copy of the package (the object files
            # stay in build_temp: the profile is keyed by their paths)
            saved = (self.inplace, self.build_lib)
            self.inplace, self.build_lib, self.force = False, stage, True
            try:
                # (FASTTCP_PGO=1 in both compiles: the profile must be of the same source)
                self._set_flags(base, [f"-fprofile-generate={prof}", "-fprofile-update=single"],
                                [f"-fprofile-generate={prof}"], pgo=True)
                super().build_extensions()
            finally:
                self.inplace, self.build_lib = saved
            shutil.copytree(os.path.join(HERE, "fasttcp"), os.path.join(stage, "fasttcp"), dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "*.html", "__pycache__"))
            # 2. the training run, against the staged build only
            # (with this process's path after it: pip's isolated build environment, where
            # numpy is, is not on the child's default path)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([stage, *[p for p in sys.path if p]]))
            subprocess.run([sys.executable, "-m", "fasttcp.bench.pgo"], cwd=stage, env=env, check=True,
                           timeout=600, stdout=subprocess.DEVNULL)
            written = {name for _, _, files in os.walk(prof) for name in files}
            # (named after the object file: its path mangled with '#', or as directories)
            missing = [m for m in PGO_MODULES
                       if not any(n == f"{m}.gcda" or n.endswith(f"#{m}.gcda") for n in written)]
            if missing:
                raise RuntimeError(f"the training run wrote no profile for {', '.join(missing)}")
            # 3. the real build, with the profile
            self._set_flags(base, [f"-fprofile-use={prof}", *PGO_USE_FLAGS], [], pgo=True)
            self.force = True
            try:
                super().build_extensions()
            finally:
                self._set_flags(base, [], [], pgo=True)     # no flag naming the deleted profile


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
