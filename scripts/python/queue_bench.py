#!/usr/bin/env python3
"""Python's multiprocessing Queue and JoinableQueue doing the work of `shmkit bench`'s
queue rows: short strings from producer processes to consumer processes.

Prints one JSON object per line: {"row": ID, "value": msgs_per_s, "unit": "msg/s"}.
Usage: queue_bench.py N [PAD]: PAD bytes of "x" after each "msg-N" (default 0).
"""
import json
import multiprocessing as mp
import sys
import time


PAD = ""


def produce(q, n, stop, consumers):
    for i in range(n):
        q.put("msg-%d%s" % (i, PAD))
    for _ in range(stop):
        q.put(None)


def consume(q):
    while q.get() is not None:
        pass


def consume_jq(q):
    while True:
        item = q.get()
        q.task_done()
        if item is None:
            return


def timed(procs):
    t = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return time.perf_counter() - t


def main():
    global PAD
    n = int(sys.argv[1])
    PAD = "x" * (int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    ctx = mp.get_context("fork")

    q = ctx.Queue()
    dt = timed([ctx.Process(target=produce, args=(q, n, 1, 1)), ctx.Process(target=consume, args=(q,))])
    print(json.dumps({"row": "queue_1p1c", "value": n / dt, "unit": "msg/s"}), flush=True)

    if len(sys.argv) <= 2:
        # The same with 500 bytes of padding (shmkit's row `queue_1p1c_500`).
        PAD = "x" * 500
        q = ctx.Queue()
        dt = timed([ctx.Process(target=produce, args=(q, n, 1, 1)), ctx.Process(target=consume, args=(q,))])
        print(json.dumps({"row": "queue_1p1c_500", "value": n / dt, "unit": "msg/s"}), flush=True)
        # And with 4,000 bytes, a quarter of the items (`queue_1p1c_4k`).
        PAD = "x" * 4000
        q = ctx.Queue()
        m = n // 4
        dt = timed([ctx.Process(target=produce, args=(q, m, 1, 1)), ctx.Process(target=consume, args=(q,))])
        print(json.dumps({"row": "queue_1p1c_4k", "value": m / dt, "unit": "msg/s"}), flush=True)
        PAD = ""

    q = ctx.Queue()
    procs = [ctx.Process(target=produce, args=(q, n // 2, 1, 2)) for _ in range(2)]
    procs += [ctx.Process(target=consume, args=(q,)) for _ in range(2)]
    dt = timed(procs)
    print(json.dumps({"row": "queue_2p2c", "value": n / dt, "unit": "msg/s"}), flush=True)

    q = ctx.JoinableQueue()
    consumers = [ctx.Process(target=consume_jq, args=(q,)) for _ in range(2)]
    t = time.perf_counter()
    for c in consumers:
        c.start()
    for i in range(n):
        q.put("msg-%d%s" % (i, PAD))
    q.join()
    dt = time.perf_counter() - t
    for _ in consumers:
        q.put(None)
    for c in consumers:
        c.join()
    print(json.dumps({"row": "joinable", "value": n / dt, "unit": "msg/s"}), flush=True)


if __name__ == "__main__":
    main()
