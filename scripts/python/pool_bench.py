#!/usr/bin/env python3
"""Python's multiprocessing doing the work of `shmkit bench`'s process-layer rows.

Prints one JSON object per line: {"row": ID, "value": X, "unit": U}. Called by `shmkit
bench` (and `benches/process.rs`) once per round, interleaved with the Rust rows, so that
the ratios compare runs made under the same machine state.

Usage: pool_bench.py WORKERS DIGEST_DIR [--quick]
"""
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time


def nothing():
    pass


def ident(x):
    return x


def digest(path):
    with open(path, "rb") as f:
        return path, hashlib.sha512(f.read()).hexdigest()


def emit(row, value, unit):
    print(json.dumps({"row": row, "value": value, "unit": unit}), flush=True)


def main():
    workers = int(sys.argv[1])
    digest_dir = sys.argv[2]
    quick = "--quick" in sys.argv
    ctx = mp.get_context("fork")

    # Process start + join (fork, Python's fastest start method on Linux).
    n = 20 if quick else 50
    times = []
    for _ in range(n):
        t = time.perf_counter()
        p = ctx.Process(target=nothing)
        p.start()
        p.join()
        times.append(time.perf_counter() - t)
    times.sort()
    emit("start_join", times[len(times) // 2] * 1e6, "us")

    with ctx.Pool(workers) as pool:
        pool.map(ident, range(workers * 4))  # warm up: every worker has started

        n = 20_000 if quick else 100_000
        t = time.perf_counter()
        for _ in pool.imap_unordered(ident, range(n), chunksize=1):
            pass
        emit("imap_chunk1", n / (time.perf_counter() - t), "tasks/s")

        n = 20_000 if quick else 100_000
        done = []
        t = time.perf_counter()
        for i in range(n):
            pool.apply_async(ident, (i,), callback=done.append)
        while len(done) < n:
            time.sleep(0.0005)
        emit("apply_async", n / (time.perf_counter() - t), "tasks/s")

        n = 1_000_000 if quick else 4_000_000
        t = time.perf_counter()
        out = pool.map(ident, range(n))
        assert len(out) == n
        emit("map_default", n / (time.perf_counter() - t), "tasks/s")

        paths = sorted(os.path.join(digest_dir, f) for f in os.listdir(digest_dir))
        total = sum(os.path.getsize(p) for p in paths)
        t = time.perf_counter()
        for _ in pool.imap_unordered(digest, paths, chunksize=20):
            pass
        emit("sha512_dir", total / (time.perf_counter() - t) / 1e6, "MB/s")


if __name__ == "__main__":
    main()
