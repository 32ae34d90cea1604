"""The load: the clients as threads spread over a few processes, each client's kind and seed
fixed by the command line, and the memory sampled while they run."""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time

from soak_client import Client, Plan
from soak_readers import CoreClient, ReadClient
from soak_stack import MemoryWatch
from soak_tally import Tally
from soak_uploads import UploadClient


def client_specs(args: argparse.Namespace) -> list[tuple[str, int]]:
    specs = [("upload", args.seed * 1000 + n) for n in range(args.upload_clients)]
    specs += [("read", args.seed * 1000 + 100 + n) for n in range(args.read_clients)]
    specs += [("core", args.seed * 1000 + 200 + n) for n in range(args.core_clients)]
    return specs


def run_clients(
    plan: Plan,
    specs: list[tuple[str, int]],
    queue: multiprocessing.Queue[Tally],
) -> None:
    """One load process: its clients as threads; their merged tally into ``queue``."""
    kinds: dict[str, tuple[type[Client], float]] = {
        "upload": (UploadClient, plan.upload_rate),
        "read": (ReadClient, plan.read_rate),
        "core": (CoreClient, plan.core_rate),
    }
    clients = [kinds[kind][0](plan, kinds[kind][1], seed) for kind, seed in specs]
    threads = [threading.Thread(target=client.run) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Tally()
    for client in clients:
        total.merge(client.tally)
    queue.put(total)


def drive(
    plan: Plan, specs: list[tuple[str, int]], processes: int, watches: list[MemoryWatch]
) -> Tally:
    """Run the clients until ``plan.stops_at``, sampling memory; their merged tally."""
    queue: multiprocessing.Queue[Tally] = multiprocessing.Queue()
    groups = [specs[n::processes] for n in range(processes)]
    workers = [
        multiprocessing.Process(target=run_clients, args=(plan, group, queue))
        for group in groups
        if group
    ]
    for worker in workers:
        worker.start()
    minute = plan.starts_at + 60
    while time.monotonic() < plan.stops_at:
        time.sleep(min(5.0, max(0.0, plan.stops_at - time.monotonic())))
        for watch in watches:
            watch.sample()
        if time.monotonic() >= minute:
            elapsed = (time.monotonic() - plan.starts_at) / 60
            rss = ", ".join(f"{w.name.split(' (')[0]} {w.sample() / 1024:.0f} MB" for w in watches)
            print(f"  {elapsed:.0f} min: {rss}", flush=True)
            minute += 60
    total = Tally()
    for _ in workers:
        total.merge(queue.get(timeout=180))
    for worker in workers:
        worker.join()
    return total
