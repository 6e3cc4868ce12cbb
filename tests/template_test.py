#!/usr/bin/env python3
"""Static checks on template.yaml and openapi.json: Cognito least privilege, the PostConfirmation
trigger, API Gateway invoke permissions, the user pool's tenant-isolation settings, the REQUEST
authorizer (TenantAuth) and which operations use it, log groups, and the audit retention schedule.

Run from the repository root (or anywhere):

    .cache/venv/bin/python tests/template_test.py

Plain Python 3 (no pytest). The template is parsed with cfn-lint's own YAML loader so that the
short-form intrinsics (!Ref, !GetAtt, !Sub) decode into their long forms. Stops at the first failure
with a non-zero exit code; on success prints "N passed, 0 failed".

Which functions call Cognito is read from the code: a function calls Cognito when the crate that
defines its binary (functions/*/Cargo.toml, [[bin]] name) enables the `shared` crate feature
`cognito`. The binary `post-confirmation` is the exception: it is the pool's own trigger, so it must
reference the pool neither by a variable nor by a policy (that would be a circular dependency).
Until some crate enables that feature, a fixed fallback set of binaries is used, and the output says so.
The binary `authorizer` only verifies tokens (against the pool's public JWKS): it carries the pool and
client ids but must not call Cognito, so its crate must not enable the feature and it has no grant.
The binaries in PENDING_BINARIES may be built by the template before their [[bin]] exists: the output
notes each one still missing, and treats it as not calling Cognito.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from pathlib import Path

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # pragma: no cover - the project venv is 3.11
    tomllib = None

try:
    from cfnlint.decode import decode_str
except ImportError:
    sys.exit("FAIL: cfn-lint is not importable; run with the project venv: .cache/venv/bin/python tests/template_test.py")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
OPENAPI = ROOT / "openapi.json"
FUNCTIONS_DIR = ROOT / "functions"

POOL = "UserPool"
POOL_REF = {"Ref": POOL}
POOL_ENV = "COGNITO_USER_POOL_ID"
TRIGGER_BINARY = "post-confirmation"
# Verifies Cognito JWTs (public JWKS) but calls no Cognito action: pool and client ids, never a grant.
AUTHORIZER_BINARY = "authorizer"
CLIENT = "UserPoolClient"
CLIENT_ENV = "COGNITO_CLIENT_ID"
RETENTION_BINARY = "audit-retention"
# Binaries the template may name before their crate declares them (functions/api-keys, functions/audit).
PENDING_BINARIES = {"api-keys", AUTHORIZER_BINARY, RETENTION_BINARY}
TENANT_AUTH = "TenantAuth"
# Functions whose every route is tenant-scoped: each of their operations must use TenantAuth.
TENANT_SCOPED_FUNCTIONS = {"RolesFunction", "UsersFunction", "AuditFunction", "ApiKeysFunction"}
FALLBACK_COGNITO_BINARIES = {"users", "tenants", "migrations"}

ALLOWED_ACTIONS = {
    "cognito-idp:AdminCreateUser",
    "cognito-idp:AdminGetUser",
    "cognito-idp:AdminDeleteUser",
    "cognito-idp:AdminDisableUser",
    "cognito-idp:AdminEnableUser",
}
EXPECTED_ACTIONS = {
    "users": set(ALLOWED_ACTIONS),
    "tenants": {"cognito-idp:AdminCreateUser", "cognito-idp:AdminGetUser", "cognito-idp:AdminDeleteUser"},
    "migrations": {"cognito-idp:AdminGetUser", "cognito-idp:AdminCreateUser"},
}
# Every Cognito action that touches groups: adding a user to `superadmin` mints a superadmin.
GROUP_ACTIONS = [
    "cognito-idp:AdminAddUserToGroup",
    "cognito-idp:AdminRemoveUserFromGroup",
    "cognito-idp:AdminListGroupsForUser",
    "cognito-idp:CreateGroup",
    "cognito-idp:UpdateGroup",
    "cognito-idp:DeleteGroup",
    "cognito-idp:GetGroup",
    "cognito-idp:ListGroups",
    "cognito-idp:ListUsersInGroup",
]
# Representative Cognito actions, used to tell whether an action pattern (possibly a wildcard) grants Cognito.
COGNITO_PROBES = sorted(ALLOWED_ACTIONS) + GROUP_ACTIONS + [
    "cognito-idp:AdminUpdateUserAttributes",
    "cognito-idp:AdminSetUserPassword",
    "cognito-idp:ListUsers",
    "cognito-idp:UpdateUserPool",
]
INTEGRATION_ARN = re.compile(r"\$\{([A-Za-z0-9]+)\.Arn\}")


class CheckFailed(Exception):
    pass


def require(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


# ------------------------------------------------------------------ loading


def load_template() -> dict:
    text = TEMPLATE.read_text(encoding="utf-8")
    template, matches = decode_str(text)
    if matches or not isinstance(template, dict):
        details = "; ".join(str(m) for m in matches or [])
        raise CheckFailed(f"template.yaml does not parse: {details}")
    return template


def resources(template: dict) -> dict:
    return template.get("Resources") or {}


def functions(template: dict) -> dict[str, dict]:
    return {name: r for name, r in resources(template).items() if r.get("Type") == "AWS::Serverless::Function"}


def binary_of(resource: dict) -> str | None:
    return ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")


def parse_toml(path: Path) -> dict:
    require(tomllib is not None, "Python 3.11+ (tomllib) is required to read Cargo.toml files")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise CheckFailed(f"{path.relative_to(ROOT)} is not valid TOML: {err}") from err


# ------------------------------------------------------------------ crates and the `cognito` feature


def dependency_tables(manifest: dict) -> list[dict]:
    """Runtime dependency tables: [dependencies] and every [target.*.dependencies] (not dev/build)."""
    tables = [manifest.get("dependencies") or {}]
    for target in (manifest.get("target") or {}).values():
        if isinstance(target, dict):
            tables.append(target.get("dependencies") or {})
    return tables


def shared_default_has_cognito() -> bool:
    path = ROOT / "shared" / "Cargo.toml"
    if not path.exists():
        return False
    features = parse_toml(path).get("features") or {}
    return "cognito" in expand_features(features, ["default"], prefix=None)


def expand_features(features: dict, roots: list[str], prefix: str | None) -> set[str]:
    """Close a crate's own feature list; with prefix="shared" return the `shared/x` features it enables."""
    seen, stack, enabled = set(), list(roots), set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        for item in features.get(name) or []:
            if prefix is None:
                enabled.add(item)
                if item in features:
                    stack.append(item)
            else:
                m = re.fullmatch(rf"{re.escape(prefix)}\??/(.+)", item)
                if m:
                    enabled.add(m.group(1))
                elif item in features:
                    stack.append(item)
    return enabled


def crate_enables_cognito(manifest: dict, workspace_shared: dict) -> bool:
    for table in dependency_tables(manifest):
        for key, spec in table.items():
            if isinstance(spec, dict) and spec.get("package", key) != "shared":
                continue
            if not isinstance(spec, dict) and key != "shared":
                continue
            spec = spec if isinstance(spec, dict) else {}
            feats = set(spec.get("features") or [])
            default_features = spec.get("default-features", True)
            if spec.get("workspace"):
                feats |= set(workspace_shared.get("features") or [])
                default_features = default_features and workspace_shared.get("default-features", True)
            if "cognito" in feats:
                return True
            if default_features and shared_default_has_cognito():
                return True
    own_features = manifest.get("features") or {}
    return "cognito" in expand_features(own_features, ["default"], prefix="shared")


def scan_crates() -> dict[str, tuple[str, bool]]:
    """binary name -> (crate directory name, crate enables shared/cognito)."""
    root_manifest = parse_toml(ROOT / "Cargo.toml")
    workspace_shared = ((root_manifest.get("workspace") or {}).get("dependencies") or {}).get("shared") or {}
    if not isinstance(workspace_shared, dict):
        workspace_shared = {}
    binaries: dict[str, tuple[str, bool]] = {}
    for cargo in sorted(FUNCTIONS_DIR.glob("*/Cargo.toml")):
        manifest = parse_toml(cargo)
        crate = cargo.parent.name
        enables = crate_enables_cognito(manifest, workspace_shared)
        bins = [b.get("name") for b in manifest.get("bin") or [] if b.get("name")]
        if not bins and (cargo.parent / "src" / "main.rs").exists():
            bins = [(manifest.get("package") or {}).get("name", crate)]
        for name in bins:
            require(name not in binaries, f"binary {name!r} is defined by two crates: {binaries.get(name, ('?',))[0]} and {crate}")
            binaries[name] = (crate, enables)
    return binaries


def cognito_callers(template: dict) -> tuple[dict[str, str], str]:
    """function logical id -> binary, for every function that calls Cognito; plus the source used."""
    crates = scan_crates()
    fns = {name: binary_of(r) for name, r in functions(template).items()}
    if any(enables for _, enables in crates.values()):
        source = "code (crates enabling shared/cognito: " + ", ".join(
            sorted({crate for crate, enables in crates.values() if enables})
        ) + ")"
        callers = {}
        pending = []
        for name, binary in fns.items():
            if binary is None:
                continue
            if binary not in crates and binary in PENDING_BINARIES:
                pending.append(f"{name} ({binary})")
                continue
            require(binary in crates, f"{name}: no functions/*/Cargo.toml defines a [[bin]] named {binary!r}")
            require(
                not (binary == AUTHORIZER_BINARY and crates[binary][1]),
                f"{name}: the authorizer only verifies tokens; its crate {crates[binary][0]} must not enable shared/cognito",
            )
            if crates[binary][1] and binary != TRIGGER_BINARY:
                callers[name] = binary
        if pending:
            source += "; note: no [[bin]] yet for " + ", ".join(sorted(pending)) + " (treated as not calling Cognito)"
        return callers, source
    source = "fallback set " + ", ".join(sorted(FALLBACK_COGNITO_BINARIES)) + " (no crate enables shared/cognito yet)"
    missing = sorted(b for b in fns.values() if b and b not in crates)
    if missing:
        source += "; binaries without a crate yet: " + ", ".join(missing)
    return {name: b for name, b in fns.items() if b in FALLBACK_COGNITO_BINARIES}, source


# ------------------------------------------------------------------ IAM helpers


def as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def is_pool_arn(value) -> bool:
    return value in ({"Fn::GetAtt": [POOL, "Arn"]}, {"Fn::GetAtt": f"{POOL}.Arn"})


def grants_cognito(action) -> bool:
    if not isinstance(action, str):
        return True  # an intrinsic we cannot read: treat as suspicious
    return any(fnmatch.fnmatchcase(probe.lower(), action.lower()) for probe in COGNITO_PROBES)


def grants_group_action(action) -> bool:
    if not isinstance(action, str):
        return True
    return any(fnmatch.fnmatchcase(probe.lower(), action.lower()) for probe in GROUP_ACTIONS)


def all_statements(node, path="") -> list[tuple[str, dict]]:
    """Every IAM statement anywhere in the template (a dict with Effect and Action/NotAction)."""
    found = []
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            found.append((path, node))
        for key, value in node.items():
            found.extend(all_statements(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(all_statements(value, f"{path}[{i}]"))
    return found


def function_policy_statements(name: str, resource: dict) -> list[dict]:
    """Inline statements from a SAM function's Policies; managed policies / templates must not touch Cognito."""
    props = resource.get("Properties") or {}
    require("Role" not in props, f"{name}: sets Role explicitly; its permissions cannot be checked here")
    statements = []
    for policy in as_list(props.get("Policies")):
        if isinstance(policy, dict) and "Statement" in policy:
            statements.extend(as_list(policy["Statement"]))
        else:
            # A managed policy name/ARN or a SAM policy template: it must not be a Cognito one.
            require(
                "cognito" not in json.dumps(policy).lower(),
                f"{name}: Policies entry {json.dumps(policy)} looks like a Cognito managed policy or policy template; "
                "use an inline least-privilege Statement",
            )
    return statements


def cognito_statements(statements: list[dict]) -> list[dict]:
    return [
        s for s in statements
        if s.get("Effect") == "Allow" and (
            "NotAction" in s or any(grants_cognito(a) for a in as_list(s.get("Action")))
        )
    ]


def effective_env(template: dict, resource: dict) -> dict:
    env = dict((((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get("Variables") or {})
    env.update((((resource.get("Properties") or {}).get("Environment") or {}).get("Variables")) or {})
    return env


# ------------------------------------------------------------------ checks


def check_cognito_callers(template: dict) -> str:
    """(a)+(b) Cognito callers carry the pool id and exactly their least-privilege actions on the pool ARN."""
    callers, source = cognito_callers(template)
    print(f"   Cognito callers from {source}: " + ", ".join(f"{n} ({b})" for n, b in sorted(callers.items())))
    require(callers, "no function calls Cognito; expected at least users, tenants and migrations")
    fns = functions(template)
    for binary in EXPECTED_ACTIONS:
        require(
            any(binary_of(r) == binary for r in fns.values()),
            f"no AWS::Serverless::Function builds binary {binary!r}",
        )

    # Functions whose grant is checked: the callers, plus any known binary already granted Cognito
    # ahead of its code (the grant must then be exactly right too).
    checked: dict[str, str] = dict(callers)
    for name, resource in sorted(fns.items()):
        if name in callers:
            continue
        binary = binary_of(resource)
        granted_now = cognito_statements(function_policy_statements(name, resource))
        if granted_now and binary in EXPECTED_ACTIONS:
            print(
                f"   note: {name} ({binary}) is granted Cognito but its crate does not enable shared/cognito yet; "
                "checking the grant anyway"
            )
            checked[name] = binary
            continue
        require(not granted_now, f"{name} ({binary}): does not call Cognito but is granted {granted_now}")
        if binary == AUTHORIZER_BINARY:
            continue  # verifies tokens: carries the pool id without a grant (checked by check_authorizer_function)
        require(
            POOL_ENV not in effective_env(template, resource),
            f"{name} ({binary}): does not call Cognito but has {POOL_ENV}",
        )

    for name, binary in sorted(checked.items()):
        resource = fns[name]
        env = effective_env(template, resource)
        require(
            env.get(POOL_ENV) == POOL_REF,
            f"{name}: Environment.Variables.{POOL_ENV} must be !Ref {POOL}, found {env.get(POOL_ENV)!r}",
        )
        statements = cognito_statements(function_policy_statements(name, resource))
        require(statements, f"{name}: calls Cognito but has no Allow statement for cognito-idp actions")
        granted: set[str] = set()
        for s in statements:
            require("NotAction" not in s, f"{name}: Cognito statement uses NotAction: {s}")
            resources_ = as_list(s.get("Resource"))
            require(
                len(resources_) == 1 and is_pool_arn(resources_[0]),
                f"{name}: Cognito statement Resource must be exactly !GetAtt {POOL}.Arn, found {s.get('Resource')!r}",
            )
            for action in as_list(s.get("Action")):
                require(
                    action in ALLOWED_ACTIONS,
                    f"{name}: action {action!r} is not one of the allowed {sorted(ALLOWED_ACTIONS)} (no wildcards)",
                )
                granted.add(action)
        expected = EXPECTED_ACTIONS.get(binary)
        if expected is not None:
            require(
                granted == expected,
                f"{name} ({binary}): Cognito actions must be exactly {sorted(expected)}; "
                f"missing {sorted(expected - granted)}, extra {sorted(granted - expected)}",
            )

    return (
        f"{len(checked)} Cognito grants least-privilege ({len(callers)} from the code); "
        f"{len(fns) - len(checked)} other functions without Cognito access"
    )


def check_no_wildcard_or_group_grants(template: dict) -> str:
    """(b) No statement anywhere grants Cognito on Resource "*", nor any group action."""
    statements = all_statements(template.get("Resources") or {}, "Resources")
    for path, s in statements:
        if s.get("Effect") != "Allow":
            continue
        require("NotAction" not in s, f"{path}: Allow with NotAction can grant Cognito group actions: {s}")
        actions = as_list(s.get("Action"))
        for action in actions:
            require(not grants_group_action(action), f"{path}: grants a Cognito group action via {action!r}")
        if any(grants_cognito(a) for a in actions):
            for res in as_list(s.get("Resource")):
                text = res.get("Fn::Sub") if isinstance(res, dict) else res
                text = text[0] if isinstance(text, list) and text else text
                wildcard = isinstance(text, str) and (
                    text == "*" or text.endswith(":*") or text.endswith("/*") or "cognito-idp:*" in text
                )
                require(not wildcard, f"{path}: grants cognito-idp actions {actions} on wildcard Resource {res!r}")
    return f"{len(statements)} IAM statements: none grants Cognito on '*', none grants a group action"


def check_post_confirmation(template: dict) -> str:
    """(c) The trigger neither references the pool (env/policy) nor lacks its Cognito event."""
    matches = [(n, r) for n, r in functions(template).items() if binary_of(r) == TRIGGER_BINARY]
    require(len(matches) == 1, f"expected exactly one function building {TRIGGER_BINARY!r}, found {[n for n, _ in matches]}")
    name, resource = matches[0]
    statements = cognito_statements(function_policy_statements(name, resource))
    require(not statements, f"{name}: must have no Cognito permissions (circular dependency with {POOL}), found {statements}")
    require(
        POOL_ENV not in effective_env(template, resource),
        f"{name}: must not have {POOL_ENV} (circular dependency with {POOL}); it reads the pool id from its event",
    )
    events = ((resource.get("Properties") or {}).get("Events")) or {}
    cognito_events = [
        e for e in events.values()
        if isinstance(e, dict) and e.get("Type") == "Cognito"
        and (e.get("Properties") or {}).get("UserPool") == POOL_REF
        and "PostConfirmation" in as_list((e.get("Properties") or {}).get("Trigger"))
    ]
    require(cognito_events, f"{name}: needs an Events entry of Type Cognito, UserPool !Ref {POOL}, Trigger PostConfirmation")
    lambda_config = ((resources(template).get(POOL) or {}).get("Properties") or {}).get("LambdaConfig") or {}
    require(
        "PostConfirmation" not in lambda_config,
        f"{POOL}.LambdaConfig.PostConfirmation is set by hand; leave it to the SAM Cognito event",
    )
    return f"{name}: no Cognito access, no {POOL_ENV}, PostConfirmation trigger on {POOL}"


def integration_functions() -> set[str]:
    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    names: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            integration = node.get("x-amazon-apigateway-integration")
            if isinstance(integration, dict):
                uri = integration.get("uri")
                sub = uri.get("Fn::Sub") if isinstance(uri, dict) else None
                if isinstance(sub, list) and sub:
                    sub = sub[0]
                if isinstance(sub, str):
                    names.update(INTEGRATION_ARN.findall(sub))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return names


def permission_target(value) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        att = value.get("Fn::GetAtt")
        if isinstance(att, list) and att:
            return att[0]
        if isinstance(att, str):
            return att.split(".")[0]
    if isinstance(value, str) and value.endswith(".Arn"):
        return value[: -len(".Arn")]
    return None


def check_api_permissions(template: dict) -> str:
    """(d) Every function named by an OpenAPI integration exists and API Gateway may invoke it."""
    named = integration_functions()
    require(named, "openapi.json names no ${X.Arn} in any x-amazon-apigateway-integration uri")
    res = resources(template)
    permitted = {
        permission_target((r.get("Properties") or {}).get("FunctionName"))
        for r in res.values()
        if r.get("Type") == "AWS::Lambda::Permission"
        and (r.get("Properties") or {}).get("Principal") == "apigateway.amazonaws.com"
        and (r.get("Properties") or {}).get("Action") == "lambda:InvokeFunction"
    }
    for name in sorted(named):
        require(name in res, f"openapi.json integrates {name}, which is not a resource in template.yaml")
        require(
            res[name].get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function"),
            f"openapi.json integrates {name}, which is a {res[name].get('Type')}, not a function",
        )
        require(
            name in permitted,
            f"{name}: integrated in openapi.json but no AWS::Lambda::Permission lets apigateway.amazonaws.com invoke it",
        )
    return "API Gateway may invoke " + ", ".join(sorted(named))


def check_pool_settings(template: dict) -> str:
    """(e) No client may write custom:tenantId; only admins create users."""
    res = resources(template)
    pools = [(n, r) for n, r in res.items() if r.get("Type") == "AWS::Cognito::UserPool"]
    require(pools, "no AWS::Cognito::UserPool in template.yaml")
    for name, pool in pools:
        cfg = ((pool.get("Properties") or {}).get("AdminCreateUserConfig")) or {}
        require(
            cfg.get("AllowAdminCreateUserOnly") is True,
            f"{name}: AdminCreateUserConfig.AllowAdminCreateUserOnly must be true (self sign-up off)",
        )
    clients = [(n, r) for n, r in res.items() if r.get("Type") == "AWS::Cognito::UserPoolClient"]
    require(clients, "no AWS::Cognito::UserPoolClient in template.yaml")
    for name, client in clients:
        props = client.get("Properties") or {}
        # Omitting WriteAttributes makes every writable attribute, custom ones included, writable.
        require("WriteAttributes" in props, f"{name}: WriteAttributes must be listed (omitted means all, custom:tenantId included)")
        require(
            "custom:tenantId" not in as_list(props.get("WriteAttributes")),
            f"{name}: WriteAttributes must never include custom:tenantId",
        )
    return f"{len(pools)} pool(s) admin-create-only; {len(clients)} client(s) cannot write custom:tenantId"


# ---- (f) dependency cycles after the SAM expansion.
# cfn-lint 1.x validates SAM templates without running the SAM transform and its E3004 rule skips
# cycles that involve AWS::Serverless::* resources, so it cannot see a pool <-> trigger cycle. Model
# the expansion here: a function aggregates its generated role (Policies) and environment, a Cognito
# event makes the pool reference the function (LambdaConfig), and the Api includes openapi.json.


def references(node, names: set[str], local: frozenset = frozenset()) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if "Ref" in node and isinstance(node["Ref"], str):
            return {node["Ref"]} & names
        if "Fn::GetAtt" in node:
            att = node["Fn::GetAtt"]
            target = att[0] if isinstance(att, list) and att else (att.split(".")[0] if isinstance(att, str) else None)
            return ({target} & names) if isinstance(target, str) else references(att, names, local)
        if "Fn::Sub" in node:
            sub = node["Fn::Sub"]
            text, variables = (sub[0], sub[1] if len(sub) > 1 else {}) if isinstance(sub, list) else (sub, {})
            if isinstance(variables, dict):
                found |= references(list(variables.values()), names, local)
                local = local | frozenset(variables)
            if isinstance(text, str):
                for var in re.findall(r"\$\{([^!}][^}]*)\}", text):
                    target = var.split(".")[0]
                    if target not in local:
                        found |= {target} & names
            return found
        for value in node.values():
            found |= references(value, names, local)
    elif isinstance(node, list):
        for value in node:
            found |= references(value, names, local)
    return found


def check_no_cycles(template: dict) -> str:
    res = resources(template)
    names = set(res)
    graph: dict[str, set[str]] = {}
    for name, r in res.items():
        props = dict(r.get("Properties") or {})
        if r.get("Type") == "AWS::Serverless::Function":
            # Event sources expand into their own resources (rule, permission, pool LambdaConfig): the
            # function itself does not reference what its Events name.
            props.pop("Events", None)
        deps = references(props, names)
        deps |= set(as_list(r.get("DependsOn"))) & names
        graph.setdefault(name, set()).update(deps)
        if r.get("Type") == "AWS::Serverless::Function":
            for event in ((r.get("Properties") or {}).get("Events") or {}).values():
                if isinstance(event, dict) and event.get("Type") == "Cognito":
                    pool = ((event.get("Properties") or {}).get("UserPool") or {}).get("Ref")
                    if pool in names:
                        graph.setdefault(pool, set()).add(name)  # LambdaConfig -> !GetAtt Function.Arn
        if r.get("Type") == "AWS::Serverless::Api" and "openapi.json" in json.dumps((r.get("Properties") or {}).get("DefinitionBody")):
            graph[name] |= (integration_functions() | openapi_arn_refs()) & names

    WHITE, GREY, BLACK = 0, 1, 2
    colour = {n: WHITE for n in graph}

    def visit(node, stack):
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt, WHITE) == GREY:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise CheckFailed("circular dependency after the SAM expansion: " + " -> ".join(cycle))
            if colour.get(nxt, WHITE) == WHITE:
                colour.setdefault(nxt, WHITE)
                visit(nxt, stack)
        stack.pop()
        colour[node] = BLACK

    for node in sorted(graph):
        if colour[node] == WHITE:
            visit(node, [])
    return f"{len(graph)} resources, no dependency cycle (Cognito trigger, OpenAPI integrations and authorizer included)"


# ------------------------------------------------------------------ the REQUEST authorizer and its routes


def load_openapi() -> dict:
    return json.loads(OPENAPI.read_text(encoding="utf-8"))


def openapi_arn_refs() -> set[str]:
    """Every ${X.Arn} anywhere in openapi.json: integrations and authorizer URIs."""
    return set(INTEGRATION_ARN.findall(json.dumps(load_openapi())))


def sub_text(value) -> str | None:
    """The template string of a Fn::Sub (short or long form), or a plain string."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        sub = sub[0] if isinstance(sub, list) and sub else sub
        return sub if isinstance(sub, str) else None
    return None


METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def operations(document: dict) -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, op)
        for path, item in (document.get("paths") or {}).items()
        for method, op in item.items()
        if method in METHODS and isinstance(op, dict)
    ]


def function_of(op: dict) -> str | None:
    text = sub_text(((op.get("x-amazon-apigateway-integration") or {}).get("uri")))
    found = INTEGRATION_ARN.findall(text or "")
    return found[0] if len(found) == 1 else None


def check_tenant_auth_scheme(template: dict) -> str:
    """(g) TenantAuth: a REQUEST Lambda authorizer, uncached, no identity source, on AuthorizerFunction."""
    schemes = ((load_openapi().get("components") or {}).get("securitySchemes")) or {}
    require(TENANT_AUTH in schemes, f"openapi.json components.securitySchemes has no {TENANT_AUTH}")
    scheme = schemes[TENANT_AUTH]
    require(scheme.get("x-amazon-apigateway-authtype") == "custom", f"{TENANT_AUTH}: x-amazon-apigateway-authtype must be custom")
    authorizer = scheme.get("x-amazon-apigateway-authorizer") or {}
    require(authorizer.get("type") == "request", f"{TENANT_AUTH}: authorizer type must be request, found {authorizer.get('type')!r}")
    ttl = authorizer.get("authorizerResultTtlInSeconds")
    require(
        ttl == 0 and not isinstance(ttl, bool),
        f"{TENANT_AUTH}: authorizerResultTtlInSeconds must be 0 (a cached policy is replayed across routes: key windows "
        f"go uncounted and revocations come late), found {ttl!r}",
    )
    require(
        "identitySource" not in authorizer,
        f"{TENANT_AUTH}: must have no identitySource (with TTL 0 none is needed; a listed one makes that header mandatory, "
        "so a caller with only the other credential would be refused before the authorizer runs)",
    )
    uri = sub_text(authorizer.get("authorizerUri")) or ""
    targets = INTEGRATION_ARN.findall(uri)
    require(targets == ["AuthorizerFunction"], f"{TENANT_AUTH}: authorizerUri must name ${{AuthorizerFunction.Arn}}, found {uri!r}")
    require(uri.endswith("/invocations"), f"{TENANT_AUTH}: authorizerUri must be the Lambda invocations path, found {uri!r}")
    fns = functions(template)
    require("AuthorizerFunction" in fns, "openapi.json's TenantAuth names AuthorizerFunction, which is not a function in template.yaml")
    require(
        binary_of(fns["AuthorizerFunction"]) == AUTHORIZER_BINARY,
        f"AuthorizerFunction must build binary {AUTHORIZER_BINARY!r}, found {binary_of(fns['AuthorizerFunction'])!r}",
    )
    return f"{TENANT_AUTH}: REQUEST authorizer AuthorizerFunction, TTL 0, no identitySource"


def check_operation_security(template: dict) -> str:
    """(h) Every operation states exactly one security requirement; tenant-scoped functions use TenantAuth."""
    document = load_openapi()
    schemes = set(((document.get("components") or {}).get("securitySchemes")) or {})
    ops = operations(document)
    require(ops, "openapi.json has no operations")
    counts: dict[str, int] = {}
    for method, path, op in ops:
        where = f"{method} {path}"
        security = op.get("security")
        require(isinstance(security, list), f"{where}: states no security of its own")
        require(len(security) == 1, f"{where}: must have exactly one security requirement, found {security!r}")
        requirement = security[0]
        require(
            isinstance(requirement, dict) and len(requirement) == 1,
            f"{where}: the requirement must name exactly one scheme, found {requirement!r}",
        )
        (scheme,) = requirement
        require(scheme in schemes, f"{where}: security names {scheme!r}, not in components.securitySchemes")
        function = function_of(op)
        if function in TENANT_SCOPED_FUNCTIONS:
            require(scheme == TENANT_AUTH, f"{where}: integrates {function}, so it must use {TENANT_AUTH}, not {scheme}")
        counts[scheme] = counts.get(scheme, 0) + 1
    require(TENANT_AUTH in counts, f"no operation uses {TENANT_AUTH}")
    return f"{len(ops)} operations, one requirement each: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items()))


def check_authorizer_function(template: dict) -> str:
    """(i) AuthorizerFunction: no Cognito grant, the pool and client ids, invocable under /authorizers/*."""
    fns = functions(template)
    matches = [n for n, r in fns.items() if binary_of(r) == AUTHORIZER_BINARY]
    require(matches == ["AuthorizerFunction"], f"expected exactly AuthorizerFunction to build {AUTHORIZER_BINARY!r}, found {matches}")
    name, resource = "AuthorizerFunction", fns["AuthorizerFunction"]
    statements = function_policy_statements(name, resource)
    require(not cognito_statements(statements), f"{name}: verifies tokens only; must have no cognito-idp permission")
    for policy in as_list((resource.get("Properties") or {}).get("Policies")):
        require("cognito" not in json.dumps(policy).lower(), f"{name}: must have no Cognito policy, found {json.dumps(policy)}")
    env = effective_env(template, resource)
    require(env.get(POOL_ENV) == POOL_REF, f"{name}: {POOL_ENV} must be !Ref {POOL} (the JWKS and issuer), found {env.get(POOL_ENV)!r}")
    require(env.get(CLIENT_ENV) == {"Ref": CLIENT}, f"{name}: {CLIENT_ENV} must be !Ref {CLIENT} (the audience), found {env.get(CLIENT_ENV)!r}")
    permitted = []
    for pname, r in resources(template).items():
        props = r.get("Properties") or {}
        if (
            r.get("Type") == "AWS::Lambda::Permission"
            and permission_target(props.get("FunctionName")) == name
            and props.get("Principal") == "apigateway.amazonaws.com"
            and props.get("Action") == "lambda:InvokeFunction"
        ):
            arn = sub_text(props.get("SourceArn")) or ""
            if "${Api}" in arn and (arn.endswith("/authorizers/*") or arn.endswith("${Api}/*")):
                permitted.append(pname)
    require(permitted, f"{name}: no AWS::Lambda::Permission lets apigateway.amazonaws.com invoke it for ${{Api}}/authorizers/*")
    return f"{name}: no Cognito grant, {POOL_ENV} and {CLIENT_ENV} set, invocable by API Gateway via {', '.join(permitted)}"


def check_retention_schedule(template: dict) -> str:
    """(j) The audit retention job runs on a schedule."""
    fns = functions(template)
    matches = [(n, r) for n, r in fns.items() if binary_of(r) == RETENTION_BINARY]
    require(len(matches) == 1, f"expected exactly one function building {RETENTION_BINARY!r}, found {[n for n, _ in matches]}")
    name, resource = matches[0]
    events = ((resource.get("Properties") or {}).get("Events")) or {}
    schedules = [
        e for e in events.values()
        if isinstance(e, dict) and e.get("Type") == "Schedule" and (e.get("Properties") or {}).get("Schedule")
    ]
    require(schedules, f"{name}: needs an Events entry of Type Schedule with a Schedule expression")
    for e in schedules:
        expr = e["Properties"]["Schedule"]
        if isinstance(expr, dict) and "Ref" in expr:
            require(expr["Ref"] in (template.get("Parameters") or {}), f"{name}: Schedule refers to unknown parameter {expr['Ref']!r}")
        require(e["Properties"].get("State", "ENABLED") == "ENABLED", f"{name}: its schedule must be ENABLED")
    return f"{name}: {len(schedules)} enabled schedule(s)"


def check_log_groups(template: dict) -> str:
    """(k) Every function has a log group named /aws/lambda/${Function} with a retention."""
    named: dict[str, dict] = {}
    for r in resources(template).values():
        if r.get("Type") != "AWS::Logs::LogGroup":
            continue
        props = r.get("Properties") or {}
        text = sub_text(props.get("LogGroupName")) or ""
        m = re.fullmatch(r"/aws/lambda/\$\{([A-Za-z0-9]+)\}", text)
        if m:
            named[m.group(1)] = props
    fns = functions(template)
    for name in sorted(fns):
        require(name in named, f"{name}: no AWS::Logs::LogGroup named !Sub \"/aws/lambda/${{{name}}}\"")
        require(named[name].get("RetentionInDays"), f"{name}: its log group has no RetentionInDays")
    return f"{len(fns)} functions, each with its log group"


CHECKS = [
    ("(a)(b) Cognito callers: pool id and least-privilege actions", check_cognito_callers),
    ("(b) no Cognito on Resource '*', no group actions", check_no_wildcard_or_group_grants),
    ("(c) PostConfirmation trigger", check_post_confirmation),
    ("(d) OpenAPI integrations have invoke permissions", check_api_permissions),
    ("(e) pool and client tenant-isolation settings", check_pool_settings),
    ("(f) no circular dependency (modelled SAM expansion)", check_no_cycles),
    ("(g) TenantAuth REQUEST authorizer", check_tenant_auth_scheme),
    ("(h) operations' security", check_operation_security),
    ("(i) authorizer function", check_authorizer_function),
    ("(j) audit retention schedule", check_retention_schedule),
    ("(k) function log groups", check_log_groups),
]


def main() -> int:
    passed = 0
    try:
        template = load_template()
    except CheckFailed as err:
        print(f"FAIL: {err}")
        print("0 passed, 1 failed")
        return 1
    for title, check in CHECKS:
        try:
            detail = check(template)
        except CheckFailed as err:
            print(f"FAIL {title}: {err}")
            print(f"{passed} passed, 1 failed")
            return 1
        passed += 1
        print(f"ok   {title}: {detail}")
    print(f"{passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
