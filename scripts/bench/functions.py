#!/usr/bin/env python3
"""What scripts/bench.sh benchmarks, derived from template.yaml, openapi.json and events/.

For every AWS::Serverless::Function of template.yaml:
  binary       Metadata.BuildProperties.Binary (the binary cargo-lambda builds);
  package      the [package] name of the Cargo.toml under its CodeUri (the `-p` to build), which
               must declare that binary;
  event        the file of events/ the bench hands it on every invocation;
  invocations  per cold start: 20 for an API Gateway proxy event, 5 for any other.

Which binary an event goes to: an API Gateway proxy event goes to the function that openapi.json
integrates for its method and resource, a REQUEST authorizer event to the function a security
scheme's authorizer names, and any other event to the binary its file name names
(`<binary>-<what>.json` or `<what>-<binary>.json`, the longest name when several fit).
A binary with one event takes it. With several, it takes its only `-list` or `-status` one: a
read, because every run repeats the event and the fixtures must stay as they were; with no such
read, its only `-scheduled` one (a schedule's run, which finds its work done after the first).
A binary left with no event, or with more than one, is an error, never skipped.

usage: functions.py [--root DIR]   prints one tab-separated line per binary:
       binary, package, event, invocations, logical id
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

HTTP_INVOCATIONS = 20
OTHER_INVOCATIONS = 5
READS = ("-list", "-status")
SCHEDULED = "-scheduled"
ARN_REF = re.compile(r"\$\{([A-Za-z0-9]+)\.Arn\}")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class Failure(Exception):
    """A derivation that cannot be made: the bench must not start."""


class TemplateLoader(yaml.SafeLoader):
    """Reads template.yaml's short-form intrinsics (!Ref, !Sub, ...) as plain values."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


TemplateLoader.add_multi_constructor("!", _intrinsic)


def binaries_of_crate(crate: Path, manifest: dict) -> set[str]:
    """The binaries a crate builds: its [[bin]] targets and cargo's automatic ones."""
    names = {b["name"] for b in manifest.get("bin", []) if "name" in b}
    if manifest.get("package", {}).get("autobins", True):
        if (crate / "src" / "main.rs").is_file():
            names.add(manifest["package"]["name"])
        bin_dir = crate / "src" / "bin"
        if bin_dir.is_dir():
            names.update(p.stem for p in bin_dir.glob("*.rs"))
            names.update(p.parent.name for p in bin_dir.glob("*/main.rs"))
    return names


def functions(root: Path) -> list[dict]:
    """Each function of template.yaml: logical id, binary and package, in the template's order."""
    template = yaml.load((root / "template.yaml").read_text(encoding="utf-8"), Loader=TemplateLoader)
    found = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
        code_uri = (resource.get("Properties") or {}).get("CodeUri")
        if not isinstance(binary, str) or not isinstance(code_uri, str):
            raise Failure(f"template.yaml: {logical_id} names no Metadata.BuildProperties.Binary or no plain CodeUri")
        crate = root / code_uri
        manifest_path = crate / "Cargo.toml"
        if not manifest_path.is_file():
            raise Failure(f"template.yaml: {logical_id}'s CodeUri {code_uri} has no Cargo.toml")
        manifest = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
        package = (manifest.get("package") or {}).get("name")
        if not package:
            raise Failure(f"{code_uri}/Cargo.toml has no [package] name")
        if binary not in binaries_of_crate(crate, manifest):
            raise Failure(f"template.yaml: {logical_id} builds binary {binary!r}, which package {package} ({code_uri}) does not declare")
        found.append({"logical_id": logical_id, "binary": binary, "package": package})
    if not found:
        raise Failure("template.yaml has no AWS::Serverless::Function")
    return found


def sub_text(value) -> str:
    if isinstance(value, dict) and "Fn::Sub" in value:
        value = value["Fn::Sub"]
        value = value[0] if isinstance(value, list) and value else value
    return value if isinstance(value, str) else ""


def is_proxy_event(event) -> bool:
    """An API Gateway (REST) proxy event; an authorizer's REQUEST event also has a method, and its methodArn."""
    return isinstance(event, dict) and "httpMethod" in event and "resource" in event and "methodArn" not in event


def is_authorizer_event(event) -> bool:
    return isinstance(event, dict) and event.get("type") == "REQUEST" and "methodArn" in event


def integrations(openapi: dict) -> dict[tuple[str, str], str]:
    """(METHOD, resource) -> the logical id of the function openapi.json integrates there."""
    routes = {}
    for path, item in (openapi.get("paths") or {}).items():
        for method, op in item.items():
            if method not in METHODS or not isinstance(op, dict):
                continue
            found = ARN_REF.findall(sub_text((op.get("x-amazon-apigateway-integration") or {}).get("uri")))
            if len(found) == 1:
                routes[(method.upper(), path)] = found[0]
    return routes


def authorizers(openapi: dict) -> set[str]:
    """The logical ids of the functions openapi.json's security schemes run as authorizers."""
    schemes = (openapi.get("components") or {}).get("securitySchemes") or {}
    return {
        name
        for scheme in schemes.values()
        for name in ARN_REF.findall(sub_text((scheme.get("x-amazon-apigateway-authorizer") or {}).get("authorizerUri")))
    }


def named_binary(stem: str, binaries: list[str]) -> str | None:
    fits = [b for b in binaries if stem == b or stem.startswith(b + "-") or stem.endswith("-" + b)]
    return max(fits, key=len) if fits else None


def bench_plan(root: Path) -> list[dict]:
    fns = functions(root)
    binary_of = {f["logical_id"]: f["binary"] for f in fns}
    openapi = json.loads((root / "openapi.json").read_text(encoding="utf-8"))
    routes = integrations(openapi)
    authorizer_binaries = sorted(binary_of[i] for i in authorizers(openapi) if i in binary_of)
    candidates: dict[str, list[tuple[str, bool]]] = {f["binary"]: [] for f in fns}
    for path in sorted((root / "events").glob("*.json")):
        event = json.loads(path.read_text(encoding="utf-8"))
        rel = path.relative_to(root).as_posix()
        if is_proxy_event(event):
            function = routes.get((str(event["httpMethod"]).upper(), event["resource"]))
            if function not in binary_of:
                raise Failure(f"{rel}: openapi.json integrates no function of template.yaml at {event['httpMethod']} {event['resource']}")
            targets = [binary_of[function]]
        elif is_authorizer_event(event):
            if len(authorizer_binaries) != 1:
                raise Failure(f"{rel}: an authorizer event, but openapi.json's schemes name {len(authorizer_binaries)} authorizer functions")
            targets = authorizer_binaries
        else:
            binary = named_binary(path.stem, list(candidates))
            targets = [binary] if binary else []
        for binary in targets:
            candidates[binary].append((rel, is_proxy_event(event)))
    plan = []
    for f in fns:
        events = candidates[f["binary"]]
        if len(events) > 1:
            reads = [e for e in events if Path(e[0]).stem.endswith(READS)]
            events = reads or [e for e in events if Path(e[0]).stem.endswith(SCHEDULED)]
        if len(events) != 1:
            listed = ", ".join(e for e, _ in candidates[f["binary"]]) or "none"
            raise Failure(
                f"no single bench event for binary {f['binary']} ({f['logical_id']}): its events are {listed}; "
                f"it needs one, or exactly one ending in {' or '.join(READS)} (else in {SCHEDULED})"
            )
        event, proxy = events[0]
        plan.append({**f, "event": event, "invocations": HTTP_INVOCATIONS if proxy else OTHER_INVOCATIONS})
    return plan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    args = parser.parse_args()
    try:
        plan = bench_plan(args.root)
    except Failure as failure:
        print(f"bench: {failure}", file=sys.stderr)
        return 1
    for p in plan:
        print("\t".join([p["binary"], p["package"], p["event"], str(p["invocations"]), p["logical_id"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
