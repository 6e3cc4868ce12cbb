#!/usr/bin/env python3
"""Cold-start and memory benchmark of a Lambda binary under a local Runtime API.

Plays the Lambda Runtime API on 127.0.0.1 (the subset a custom runtime uses), starts the
binary as Lambda would (AWS_LAMBDA_RUNTIME_API and the usual variables), hands it one event
per invocation, and records:
  init_ms   process start -> first GET /invocation/next (the runtime's init phase)
  secret_ms of which reading the connection string from Secrets Manager (the AWS
            configuration and GetSecretValue, as the function logs it: `secretFetchMs`)
  init_without_secret_ms   init_ms - secret_ms
  first_ms  process start -> first response (init plus a cold invocation: the Mongo
            connection is made on that first call)
  warm_ms   median of the following invocations' round trips
  peak_rss  the process's VmHWM after all invocations
  rss_anon  of the resident memory then, the anonymous part (heap and stacks, RssAnon): the
            rest is the binary's own pages, whose count follows where the linker placed the
            code the run touched (the kernel maps the pages around each one faulted in), so a
            change that moves functions around can move peak_rss by a MiB or two while
            rss_anon, what the code allocates, stays put
Repeats for --runs cold starts and prints one JSON summary on one line (scripts/bench.sh prints
one such line per binary). Loopback only, bounded in count.
"""
import argparse
import json
import os
import statistics
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"


class Runtime:
    def __init__(self, event, invocations):
        self.event = json.dumps(event).encode()
        self.remaining = invocations
        self.lock = threading.Lock()
        self.next_at = []          # time of each GET /next
        self.responses = []        # (time, status code of the handler's HTTP response, body)
        self.errors = []
        self.done = threading.Event()

    def handler(runtime):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != f"{PREFIX}/invocation/next":
                    self.send_error(404)
                    return
                runtime.next_at.append(time.monotonic())
                with runtime.lock:
                    if runtime.remaining == 0:
                        runtime.done.set()
                        # Park the runtime: the benchmark kills the process now.
                        time.sleep(30)
                        return
                    runtime.remaining -= 1
                    n = runtime.remaining
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Lambda-Runtime-Aws-Request-Id", f"bench-{n}")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:bench")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Length", str(len(runtime.event)))
                self.end_headers()
                self.wfile.write(runtime.event)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if "/response" in self.path:
                    runtime.responses.append((time.monotonic(), body))
                else:
                    runtime.errors.append(body)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


def memory_kib(pid):
    """VmHWM and RssAnon of a live process, in KiB."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "RssAnon"):
                found[name] = int(value.split()[0])
    return found.get("VmHWM", 0), found.get("RssAnon", 0)


def one_run(binary, event, invocations, env):
    runtime = Runtime(event, invocations)
    server = ThreadingHTTPServer(("127.0.0.1", 0), runtime.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    lambda_env = dict(env)
    lambda_env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_REGION": "us-east-1",
        # Warnings, and the one info line that times the secret's fetch.
        "RUST_LOG": "warn,shared::config=info",
    })
    started = time.monotonic()
    proc = subprocess.Popen([binary], env=lambda_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    secret_ms = []

    def read_stdout():
        for line in proc.stdout:
            if b"secretFetchMs" in line:
                try:
                    secret_ms.append(float(json.loads(line)["secretFetchMs"]))
                except (ValueError, KeyError):
                    pass

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        if not runtime.done.wait(timeout=60):
            raise SystemExit(f"{binary} did not finish {invocations} invocations: {proc.stderr.read1(4096)!r}")
        rss, anon = memory_kib(proc.pid)
    finally:
        proc.kill()
        proc.wait()
        reader.join(timeout=5)
        server.shutdown()
    if runtime.errors:
        raise SystemExit(f"handler errors: {runtime.errors[:2]}")
    statuses = {json.loads(body).get("statusCode") for _, body in runtime.responses}
    first = runtime.responses[0][0]
    warm = [runtime.responses[i][0] - runtime.next_at[i] for i in range(1, len(runtime.responses))]
    init_ms = (runtime.next_at[0] - started) * 1000
    fetch = secret_ms[0] if secret_ms else 0.0
    return {
        "init_ms": init_ms,
        "secret_ms": fetch,
        "init_without_secret_ms": init_ms - fetch,
        "first_ms": (first - started) * 1000,
        "warm_ms": statistics.median(warm) * 1000 if warm else 0.0,
        "peak_rss_mib": rss / 1024,
        "rss_anon_mib": anon / 1024,
        "statuses": sorted(s for s in statuses if s is not None),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("event")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--invocations", type=int, default=20)
    args = parser.parse_args()
    with open(args.event) as f:
        event = json.load(f)
    results = [one_run(args.binary, event, args.invocations, os.environ) for _ in range(args.runs)]

    def summary(key):
        values = sorted(r[key] for r in results)
        return {"median": round(statistics.median(values), 1), "max": round(values[-1], 1)}

    print(json.dumps({
        "binary": args.binary,
        "event": args.event,
        "binary_mib": round(os.path.getsize(args.binary) / 2**20, 1),
        "runs": args.runs,
        "invocations_per_run": args.invocations,
        "init_ms": summary("init_ms"),
        "secret_ms": summary("secret_ms"),
        "init_without_secret_ms": summary("init_without_secret_ms"),
        "first_invocation_ms": summary("first_ms"),
        "warm_invocation_ms": summary("warm_ms"),
        "peak_rss_mib": summary("peak_rss_mib"),
        "rss_anon_mib": summary("rss_anon_mib"),
        "handler_statuses": sorted({s for r in results for s in r["statuses"]}),
    }))


if __name__ == "__main__":
    main()
