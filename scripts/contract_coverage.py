"""Fails unless every operation of the given OpenAPI tags answered a 2xx at least once in the
schemathesis runs, read from their HAR reports: a run whose every call was refused (a 403 for a
caller who may not, say) would otherwise pass while proving nothing about the operation.

usage: contract_coverage.py [--reads] [--skip OPERATION_ID,...] REPORT.har[,REPORT.har...] openapi.json TAG [TAG ...]
       contract_coverage.py --tenant-auth-tags openapi.json

--reads counts only GET operations (whose 2xx a fuzzer reaches reliably), --skip leaves out the
named operations (those the caller is documented never to get a 2xx from).

--tenant-auth-tags prints, one a line, the tags whose every operation uses TenantAuth alone: the
operations a tenant's admin and its API keys can reach, which scripts/test.sh runs as them. It
fails when there is none.
"""
import json
import re
import sys
from urllib.parse import urlparse


def operations(spec, tags, reads, skip):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if reads and method != "get":
                continue
            if isinstance(op, dict) and op.get("operationId") in skip:
                continue
            if isinstance(op, dict) and set(op.get("tags", [])) & tags:
                pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$"
                yield method.upper(), path, re.compile(pattern), op.get("operationId", f"{method} {path}")


METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def tenant_auth_tags(spec):
    """The tags, in the document's order, whose every operation states TenantAuth as its only
    security requirement (an operation without its own inherits the document's)."""
    tags, others = [], set()
    for item in spec["paths"].values():
        for method, op in item.items():
            if method not in METHODS or not isinstance(op, dict):
                continue
            tenant_auth = op.get("security", spec.get("security")) == [{"TenantAuth": []}]
            for tag in op.get("tags", []):
                if not tenant_auth:
                    others.add(tag)
                elif tag not in tags:
                    tags.append(tag)
    return [t for t in tags if t not in others]


def main():
    args = sys.argv[1:]
    if args[:1] == ["--tenant-auth-tags"]:
        if len(args) != 2:
            sys.exit(__doc__)
        tags = tenant_auth_tags(json.load(open(args[1])))
        if not tags:
            sys.exit(f"{args[1]}: no tag whose every operation uses TenantAuth")
        print("\n".join(tags))
        return
    reads = "--reads" in args
    args = [a for a in args if a != "--reads"]
    skip = set()
    if "--skip" in args:
        i = args.index("--skip")
        skip = set(args[i + 1].split(","))
        del args[i : i + 2]
    har_path, spec_path, *tags = args
    spec = json.load(open(spec_path))
    entries = [e for path in har_path.split(",") for e in json.load(open(path))["log"]["entries"]]
    ops = list(operations(spec, set(tags), reads, skip))
    # Literal segments win over parameters, as in the gateway: /users/me is not /users/{userId}.
    ops.sort(key=lambda o: o[1].count("{"))
    seen = {op_id: set() for *_, op_id in ops}
    for entry in entries:
        method = entry["request"]["method"].upper()
        path = urlparse(entry["request"]["url"]).path
        status = entry["response"]["status"]
        for op_method, _, pattern, op_id in ops:
            if op_method == method and pattern.match(path):
                seen[op_id].add(status)
                break
    missing = [op_id for op_id, statuses in seen.items() if not any(200 <= s < 300 for s in statuses)]
    for op_id, statuses in sorted(seen.items()):
        print(f"  {op_id}: {sorted(statuses)}")
    if missing:
        print(f"no 2xx for: {', '.join(missing)}", file=sys.stderr)
        sys.exit(1)
    print(f"every operation of {', '.join(tags)} answered a 2xx ({len(seen)} operations)")


if __name__ == "__main__":
    main()
