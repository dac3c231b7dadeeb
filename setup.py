"""Build the native extension: src/qsketch/_core.pyx over the C core in csrc/.

QSKETCH_DEBUG=1 builds with -O0 -g, C asserts on and Cython's bounds checks,
for debugging the binding under gdb or valgrind.
"""

import os

import numpy  # noqa: F401  (build requirement; memoryviews need no headers)
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("QSKETCH_DEBUG") == "1"

if os.name == "nt":
    compile_args = ["/O2"]
else:
    compile_args = ["-std=c99", "-Wall", "-Wextra", "-Wno-unused-function"]
    compile_args += ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3"]

directives = {"language_level": "3", "binding": True, "embedsignature": True}
if DEBUG:
    directives.update(boundscheck=True, wraparound=True, initializedcheck=True)

extensions = [
    Extension(
        "qsketch._core",
        sources=["src/qsketch/_core.pyx", "csrc/qs_kll.c", "csrc/qs_interp.c", "csrc/qs_buckets.c",
                 "csrc/qs_serde.c"],
        include_dirs=["csrc"],
        extra_compile_args=compile_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives, include_path=["src"]))
