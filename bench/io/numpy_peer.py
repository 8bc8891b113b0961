# bench/io/numpy_peer.py - the numpy peer of io.npy_load/io.npy_save (run by bench_io_numpy).
# numpy.save is followed by fsync, as dagger_file_save syncs before its rename.
# SPDX-License-Identifier: MIT
import os
import sys
import time

import numpy as np

sizes = [int(s) for s in sys.argv[1].split(",")]
reps = int(sys.argv[2])
folder = sys.argv[3]
for n in sizes:
    a = np.arange(n // 8, dtype=np.float64)
    path = os.path.join(folder, "bench-numpy-%d.npy" % os.getpid())
    best_save = best_load = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        with open(path, "wb") as f:
            np.save(f, a)
            f.flush()
            os.fsync(f.fileno())
        best_save = min(best_save, time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = np.load(path)
        best_load = min(best_load, time.perf_counter() - t0)
        assert b[-1] == a[-1]
    os.unlink(path)
    print("RESULT|io.npy_load|numpy|bytes=%d|%.3f|GB/s" % (n, n / best_load / 1e9))
    print("RESULT|io.npy_save|numpy|bytes=%d|%.3f|GB/s" % (n, n / best_save / 1e9))
