"""EQUAL on Dagster: instruction-tuning data from web crawls (see README.md and docs/).

Importing the package first sets one process-wide default, before numpy can load its OpenBLAS:

* ``OPENBLAS_THREAD_TIMEOUT`` = :data:`OPENBLAS_THREAD_TIMEOUT` unless set. numpy's OpenBLAS starts one thread per
  core beyond the first when numpy is imported; each spins, waiting for work, for 2^28 cycles (about 0.1 s) before it
  sleeps, and again after every threaded BLAS call. Measured on 2 cores: 0.10 s of CPU per process, in a process that
  never calls BLAS (an ingest: numpy comes with pyarrow); on N cores (N-1) x 0.1 s. Unseen on an idle machine, where
  the spin runs on an idle core, it is taken from the other processes when several share the cores (four concurrent
  ingests, Ray workers, Dagster runs). At 2^24 cycles (a few milliseconds) the threads still catch back-to-back calls.
  faiss's OpenBLAS is unaffected (its OpenMP build has no such threads).
"""

import os

OPENBLAS_THREAD_TIMEOUT = "24"  # log2 of the cycles an idle OpenBLAS thread spins before it sleeps (OpenBLAS: 28)

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
