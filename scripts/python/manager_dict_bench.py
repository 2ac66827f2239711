#!/usr/bin/env python3
"""Python's `multiprocessing.Manager().dict()` doing the work of the `dict sets from 2
processes` benchmark (benches/collections.rs) and of the dict rows of `shmkit bench`: two
processes at once each set N distinct integer keys (`d[k] = k`) through the same Manager
dict proxy, then each gets its keys back; each rate is all operations over the time from
a common start to the last finish.

Prints one JSON object per line, for each of ROUNDS rounds:
{"row": "dict_sets_2procs", "value": X, "unit": "sets/s"} and
{"row": "dict_gets_2procs", "value": X, "unit": "gets/s"}; then the medians as rows
"dict_sets_2procs_median" and "dict_gets_2procs_median".

Usage: manager_dict_bench.py [N_PER_PROCESS] [ROUNDS]
"""
import json
import multiprocessing as mp
import sys
import time


def worker(d, base, n, start, done, start_gets, done_gets):
    start.wait()
    for k in range(base, base + n):
        d[k] = k
    done.put(time.perf_counter())
    start_gets.wait()
    for k in range(base, base + n):
        assert d[k] == k
    done_gets.put(time.perf_counter())


def emit(row, value, unit):
    print(json.dumps({"row": row, "value": value, "unit": unit}), flush=True)


def one_round(ctx, manager, n):
    d = manager.dict()
    start, start_gets = ctx.Barrier(3), ctx.Barrier(3)
    done, done_gets = ctx.Queue(), ctx.Queue()
    ps = [
        ctx.Process(target=worker, args=(d, i * n, n, start, done, start_gets, done_gets))
        for i in range(2)
    ]
    for p in ps:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    ends = [done.get() for _ in ps]
    sets = 2 * n / (max(ends) - t0)
    assert len(d) == 2 * n
    start_gets.wait()
    t1 = time.perf_counter()
    ends = [done_gets.get() for _ in ps]
    gets = 2 * n / (max(ends) - t1)
    for p in ps:
        p.join()
        assert p.exitcode == 0
    return sets, gets


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    ctx = mp.get_context("fork")
    rates = {"dict_sets_2procs": [], "dict_gets_2procs": []}
    with ctx.Manager() as manager:
        for _ in range(rounds):
            sets, gets = one_round(ctx, manager, n)
            rates["dict_sets_2procs"].append(sets)
            emit("dict_sets_2procs", sets, "sets/s")
            rates["dict_gets_2procs"].append(gets)
            emit("dict_gets_2procs", gets, "gets/s")
    for row, unit in [("dict_sets_2procs", "sets/s"), ("dict_gets_2procs", "gets/s")]:
        r = sorted(rates[row])
        emit(row + "_median", r[len(r) // 2], unit)


if __name__ == "__main__":
    main()
