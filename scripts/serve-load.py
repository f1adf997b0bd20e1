#!/usr/bin/env python3
"""The load check of `proctor serve`, driven by scripts/serve-load.sh.

Against a running server (URL and token as arguments): one warm-up run of `text/stats@1`
built from source, which leaves the image in the server's build cache, then N concurrent
`POST /v1/runs` of the same mock run, each a thread of its own so that every request is in
flight at once. Waits for every submission to end, then checks that none was lost: N
distinct execution ids, each `succeeded`, each in the server's listing. Prints the figures
as one JSON object on stdout; exits 1 on any loss or failure.
"""

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

RUN = {"ref": "text/stats@1", "mode": "mock", "build": True}
FINAL = {"succeeded", "failed", "cancelled"}


def call(url, token, method="GET", body=None, timeout=600):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def list_all(base, token, page=500):
    """Every execution the server lists, page by page."""
    executions, offset = [], 0
    while True:
        status, listed = call(f"{base}/v1/executions?limit={page}&offset={offset}", token)
        if status != 200:
            sys.exit(f"GET /v1/executions answered {status}: {listed}")
        executions += listed["executions"]
        offset += len(listed["executions"])
        if not listed["executions"] or offset >= listed["total"]:
            return executions


def wait_until_final(base, token, ids, deadline_s):
    """Polls the listing until every id is in a final state; their summaries by id."""
    deadline = time.monotonic() + deadline_s
    wanted = set(ids)
    while True:
        seen = {e["execution_id"]: e for e in list_all(base, token) if e["execution_id"] in wanted}
        if len(seen) == len(wanted) and all(e["state"] in FINAL for e in seen.values()):
            return seen
        if time.monotonic() > deadline:
            states = {}
            for e in seen.values():
                states[e["state"]] = states.get(e["state"], 0) + 1
            sys.exit(f"not every run ended in {deadline_s}s: {states}, {len(wanted) - len(seen)} unseen")
        time.sleep(0.5)


def rfc3339(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--deadline-s", type=int, default=1800)
    args = parser.parse_args()
    base = args.url.rstrip("/")

    print("[load] warm-up: one run builds text/stats@1 into the server's build cache", file=sys.stderr)
    status, answer = call(f"{base}/v1/runs", args.token, "POST", RUN)
    if status != 202:
        sys.exit(f"warm-up refused: {status} {answer}")
    warm = wait_until_final(base, args.token, [answer["execution_id"]], args.deadline_s)
    if warm[answer["execution_id"]]["state"] != "succeeded":
        sys.exit(f"warm-up failed: {warm}")

    print(f"[load] {args.runs} concurrent submissions", file=sys.stderr)
    barrier = threading.Barrier(args.runs)

    def submit(_):
        barrier.wait()
        started = time.perf_counter()
        status, answer = call(f"{base}/v1/runs", args.token, "POST", RUN)
        return status, answer, time.perf_counter() - started

    wall_start = time.time()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.runs) as pool:
        answers = list(pool.map(submit, range(args.runs)))
    submit_s = time.perf_counter() - t0

    refused = [(s, a) for s, a, _ in answers if s != 202]
    if refused:
        sys.exit(f"{len(refused)} submissions refused, e.g. {refused[0]}")
    ids = [a["execution_id"] for _, a, _ in answers]
    if len(set(ids)) != args.runs:
        sys.exit(f"{args.runs} submissions gave {len(set(ids))} distinct ids")

    print("[load] waiting for every run to end", file=sys.stderr)
    summaries = wait_until_final(base, args.token, ids, args.deadline_s)
    done_s = time.perf_counter() - t0
    not_succeeded = {i: s["state"] for i, s in summaries.items() if s["state"] != "succeeded"}
    if not_succeeded:
        sys.exit(f"{len(not_succeeded)} runs did not succeed: {list(not_succeeded.items())[:5]}")
    # The last settle as the ledger timed it; the poll's own observation if it has none.
    settled_at = [s.get("settled_at") for s in summaries.values()]
    if all(settled_at):
        last_settle_s = max(rfc3339(t) for t in settled_at) - wall_start
    else:
        last_settle_s = done_s
    latencies = sorted(latency for _, _, latency in answers)
    figures = {
        "runs": args.runs,
        "distinct_ids": len(set(ids)),
        "succeeded": len(summaries),
        "submit_seconds": round(submit_s, 3),
        "submissions_per_s": round(args.runs / submit_s, 1),
        "completion_seconds": round(last_settle_s, 3),
        "completions_per_s": round(args.runs / last_settle_s, 2),
        "submit_latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "submit_latency_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 1),
        "observed_all_done_seconds": round(done_s, 3),
        "execution_ids": ids,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
