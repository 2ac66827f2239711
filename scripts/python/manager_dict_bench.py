#!/usr/bin/env python3
"""Python's `multiprocessing.Manager().dict()` doing the work of the `dict sets from 2
processes` benchmark (benches/collections.rs): two processes at once each set N distinct
integer keys (`d[k] = k`) through the same Manager dict proxy; the rate is all sets over
the time from a common start to the last finish.

Prints one JSON object per line: {"row": "dict_sets_2procs", "value": X, "unit": "sets/s"}
for each of ROUNDS rounds, then the median as row "dict_sets_2procs_median".

Usage: manager_dict_bench.py [N_PER_PROCESS] [ROUNDS]
"""
import json
import multiprocessing as mp
import sys
import time


def setter(d, base, n, start, done):
    start.wait()
    for k in range(base, base + n):
        d[k] = k
    done.put(time.perf_counter())


def emit(row, value, unit):
    print(json.dumps({"row": row, "value": value, "unit": unit}), flush=True)


def one_round(ctx, manager, n):
    d = manager.dict()
    start = ctx.Barrier(3)
    done = ctx.Queue()
    ps = [ctx.Process(target=setter, args=(d, i * n, n, start, done)) for i in range(2)]
    for p in ps:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    ends = [done.get() for _ in ps]
    for p in ps:
        p.join()
    assert len(d) == 2 * n
    return 2 * n / (max(ends) - t0)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    ctx = mp.get_context("fork")
    rates = []
    with ctx.Manager() as manager:
        for _ in range(rounds):
            r = one_round(ctx, manager, n)
            rates.append(r)
            emit("dict_sets_2procs", r, "sets/s")
    rates.sort()
    emit("dict_sets_2procs_median", rates[len(rates) // 2], "sets/s")


if __name__ == "__main__":
    main()
