#!/usr/bin/env python3
"""Rehearse a multi-host run on one machine: N workers on 127.0.0.1.

    python launch/local_cluster.py --num_workers=2 -- \
        python -m pretraining.train --strategy=multi_worker \
        --experiment=configs/experiments/demo.json --model_dir=runs/mw

Picks free ports from the OS, gives each worker its own TF_CONFIG, prefixes
every output line with `[worker i]`, waits for all of them, and if one fails
(non-zero exit) or `--timeout` passes, terminates the others (SIGTERM, then
SIGKILL after `--grace` seconds). Exit status: 0 if every worker succeeded,
else the first failing worker's status (or 124 on timeout).
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def free_ports(n: int) -> list[int]:
    """Ports the OS says are free right now (bound then released together)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_configs(num_workers: int, ports: list[int]) -> list[dict]:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return [{"cluster": cluster, "task": {"type": "worker", "index": i}}
            for i in range(num_workers)]


def _pump(stream, prefix: str, out):
    for line in iter(stream.readline, ""):
        out.write(f"{prefix} {line}")
        out.flush()
    stream.close()


def _stop(procs, grace: float):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + grace
    for p in procs:
        remaining = max(deadline - time.time(), 0.0)
        try:
            p.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run(command: list[str], num_workers: int, timeout: float, grace: float) -> int:
    configs = tf_configs(num_workers, free_ports(num_workers))
    procs, pumps = [], []
    for i, config in enumerate(configs):
        env = dict(os.environ, TF_CONFIG=json.dumps(config))
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        procs.append(proc)
        pump = threading.Thread(target=_pump, args=(proc.stdout, f"[worker {i}]", sys.stdout),
                                daemon=True)
        pump.start()
        pumps.append(pump)
    deadline = time.time() + timeout
    status = None
    try:
        while status is None:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, code = failed[0]
                sys.stderr.write(f"local_cluster: worker {i} exited with status {code}; "
                                 "stopping the others.\n")
                status = code if code > 0 else 128 - code
            elif all(c == 0 for c in codes):
                status = 0
            elif time.time() > deadline:
                sys.stderr.write(f"local_cluster: --timeout={timeout:g}s passed; stopping "
                                 "all workers.\n")
                status = 124
            else:
                time.sleep(0.1)
    finally:
        _stop(procs, grace)
        for pump in pumps:
            pump.join(timeout=5)
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="Seconds before all workers are stopped (default 3600).")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="Seconds between SIGTERM and SIGKILL when stopping (default 10).")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="The worker command, after `--`.")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the worker command after `--`, e.g. "
                     "-- python -m pretraining.train --strategy=multi_worker ...")
    if args.num_workers < 1:
        parser.error(f"--num_workers must be >= 1. Received: {args.num_workers}")
    return run(command, args.num_workers, args.timeout, args.grace)


if __name__ == "__main__":
    sys.exit(main())
