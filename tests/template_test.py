#!/usr/bin/env python3
"""Static checks on template.yaml and openapi.json: Cognito least privilege, the PostConfirmation
trigger, API Gateway invoke permissions, the user pool's tenant-isolation settings, the REQUEST
authorizer (TenantAuth) and which operations use it, log groups, and the audit retention schedule;
the data URI from Secrets Manager, setup on deploy (a custom resource), the usage snapshot
schedule, CORS (preflight mocks, gateway responses, never credentials), stage throttling, the
alarms, their topic and the dashboard, the personal-data KMS master key and the key vault, the saga
sweep's schedule, the invitation e-mail (through SES only when a verified identity is given), the
self-service sign-up switch (off by default, refused without SES) and its optional WAF rule, the
erasure receipts' signing key and the backup retentions the receipt states, and tenant exports: the
jobs queue and its worker, and the export bucket with who may do what in it.

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

Which functions use the personal-data master key (KMS GenerateDataKey and Decrypt) and the key vault
is read from the code the same way: those whose crate enables the `shared` feature `kms`. No fallback:
the key policy's grants, the KMS_KEY_ID / KEY_VAULT_* variables and the vault secret's grant must name
exactly those functions. The account administers the key but may not use it.

Which functions use the export bucket and the jobs queue is fixed here (EXPORT_ACCESS, by binary, with
exactly what each may do) and held to the code: every function whose crate enables the `shared`
feature `exports` must be in it, but for EXPORTS_FREE_SIBLINGS (binaries that share such a crate and
touch no export); one listed ahead of its crate enabling the feature is noted.

The last check compares every alarm on our own metrics with the Embedded Metric Format lines that the
Rust test `binaries` (run by scripts/test.sh) captures into target/emf/*.jsonl (or the directory in
EMF_CAPTURE_DIR): an alarm on a metric or dimension set that is never emitted never fires. Run
alone, this script therefore needs the cargo tests to have run first.
"""

from __future__ import annotations

import fnmatch
import json
import os
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
COGNITO_AUTH = "CognitoAuth"
# Every operation of a function that openapi.json integrates uses TenantAuth, but these: the
# superadmin-only operations, which use CognitoAuth. A new context is checked without a line here.
COGNITO_OPERATIONS = {
    "TenantsFunction": {
        "listTenants",
        "updateTenant",
        "suspendTenant",
        "reactivateTenant",
        "updateBilling",
        "getTenantUsageHistory",
        "restoreTenant",
    },
    # Tenants are made here only (POST /tenants, the brief's route, and POST /onboarding), and
    # ended here (offboarding, its cancellation, and the purge's receipt).
    "OnboardingFunction": {
        "createTenant",
        "onboardTenant",
        "getOnboarding",
        "offboardTenant",
        "cancelTenantOffboarding",
        "getTenantReceipt",
    },
}
# The only operations that integrate a function with no authorizer at all (security: []), by the
# function they integrate: self-service sign-up, behind its switch and its own bounds. Any other
# operation left anonymous fails the check, so no route becomes public by accident.
ANONYMOUS_OPERATIONS = {
    "OnboardingFunction": {"signUp"},
}
FALLBACK_COGNITO_BINARIES = {"users", "onboarding", "migrations"}
# Binaries whose crate enables shared/cognito for a sibling binary of the same crate (tenant-jobs'
# restores invite an admin), and which call no Cognito action themselves: no pool id, no grant.
COGNITO_FREE_SIBLINGS = {"tenants"}
COGNITO_FEATURE = "cognito"

ALLOWED_ACTIONS = {
    "cognito-idp:AdminCreateUser",
    "cognito-idp:AdminGetUser",
    "cognito-idp:AdminDeleteUser",
    "cognito-idp:AdminDisableUser",
    "cognito-idp:AdminEnableUser",
}
EXPECTED_ACTIONS = {
    "users": set(ALLOWED_ACTIONS),
    # Disable and enable: the removal of an unconfirmed sign-up (users::signups), from an onboarding's
    # e-mail step or the sweep, disables its admin first and enables it again if it was confirmed.
    "onboarding": {
        "cognito-idp:AdminCreateUser",
        "cognito-idp:AdminGetUser",
        "cognito-idp:AdminDeleteUser",
        "cognito-idp:AdminDisableUser",
        "cognito-idp:AdminEnableUser",
    },
    "migrations": {"cognito-idp:AdminGetUser", "cognito-idp:AdminCreateUser"},
    # A restore invites the new tenant's admin: created, looked up after a lost reply, deleted by the
    # compensation.
    "tenant-jobs": {"cognito-idp:AdminCreateUser", "cognito-idp:AdminGetUser", "cognito-idp:AdminDeleteUser"},
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

# The data URI: a secret fetched at cold start, never a plain variable (lambda:GetFunctionConfiguration
# would show it).
SECRET_PARAM = "MongoDbUriSecretArn"
SECRET_ENV = "MONGODB_URI_SECRET_ARN"
PLAIN_URI_ENV = "MONGODB_URI"
SECRET_ACTION = "secretsmanager:GetSecretValue"
MIGRATIONS_BINARY = "migrations"
SETUP_RESOURCE = "SetupOnDeploy"
USAGE_SNAPSHOT_INPUT = {"action": "usage-snapshot"}
# CORS: one admin-panel origin, a stack parameter, named by the preflights, the gateway responses and
# (through the environment) the functions' own responses.
ORIGIN_PARAM = "AdminPanelOrigin"
ORIGIN_SUB = {"Fn::Sub": "'${AdminPanelOrigin}'"}
ORIGIN_ENV = "CORS_ALLOWED_ORIGIN"
PREFLIGHT_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age")
PREFLIGHT_REQUEST_HEADERS = {"authorization", "content-type", "x-api-key", "idempotency-key"}
# Gateway responses that must exist: the defaults, the authorizer's refusals, and throttling.
REQUIRED_GATEWAY_RESPONSES = {"DEFAULT_4XX": None, "DEFAULT_5XX": None, "UNAUTHORIZED": None, "ACCESS_DENIED": None, "THROTTLED": "429"}
THROTTLING_PARAMS = {"ThrottlingRateLimit": "ThrottlingRateLimit", "ThrottlingBurstLimit": "ThrottlingBurstLimit"}
# Metrics: shared::metrics writes EMF lines in this namespace, Service = METRICS_SERVICE = the stack.
METRICS_NAMESPACE = "Tenancy"
METRICS_ENV = "METRICS_SERVICE"
STACK_NAME = {"Ref": "AWS::StackName"}
ALARM_TOPIC = "AlarmTopic"
ALARM_EMAIL_PARAM = "AlarmEmail"
# The unusual-access alarms the platform promises, by the metric each watches.
ALARMED_METRICS = {
    "5xx",
    "Requests",
    "ScopeRefusals",
    "AuthFailures",
    "Throttles",
    "Latency",
    "MigrationErrors",
    # The platform's hourly sign-up cap reached, and a saga the sweep could not end.
    "SignupCapReached",
    "SagasLeftOpen",
}
EMF_CAPTURE_ENV = "EMF_CAPTURE_DIR"
EMF_CAPTURE_DEFAULT = ROOT / "target" / "emf"
# Personal data (§12): the KMS master key that wraps the tenants' data keys, and the key vault. The
# functions that use them are those whose crate enables the `shared` feature `kms`.
KMS_FEATURE = "kms"
PII_KEY = "PiiMasterKey"
PII_KEY_ENV = "KMS_KEY_ID"
VAULT_DB_PARAM = "KeyVaultDatabase"
VAULT_DB_ENV = "KEY_VAULT_DATABASE"
VAULT_SECRET_PARAM = "KeyVaultUriSecretArn"
VAULT_SECRET_ENV = "KEY_VAULT_URI_SECRET_ARN"
VAULT_ENV = (PII_KEY_ENV, VAULT_DB_ENV, VAULT_SECRET_ENV)
# What the key's users are granted, exactly, and no one else.
PII_KEY_USE = {"kms:GenerateDataKey", "kms:Decrypt"}
# Actions that use the key, or hand its use out (a grant gives Decrypt without changing the key policy):
# no action pattern of anyone but the key's users may match one.
KMS_USE_PROBES = [
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyPairWithoutPlaintext",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:CreateGrant",
]
# The key must stay manageable (CloudFormation's key policy lockout check asks for PutKeyPolicy).
KMS_ADMIN_PROBES = ["kms:PutKeyPolicy", "kms:DescribeKey", "kms:EnableKeyRotation", "kms:ScheduleKeyDeletion"]
ACCOUNT_ROOT = "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"
# The secrets a function may read: the data URI, and the key vault's (only the vault's users).
READABLE_SECRETS = [[{"Ref": SECRET_PARAM}], [{"Ref": VAULT_SECRET_PARAM}]]
# The binaries that seal or open personal data whatever else changes: dropping one from the key's
# users (its crate's `kms` feature and its role in the key policy together) fails the check.
REQUIRED_KMS_BINARIES = {"users", "post-confirmation", "tenants", "tenant-jobs", "onboarding", "migrations"}
# The durable sagas' sweeper: the onboarding binary, on its own schedule.
SWEEP_BINARY = "onboarding"
# The invitation e-mail: Cognito allows a custom message only through SES (EmailSendingAccount
# DEVELOPER), so both hang on one condition, set by a verified SES identity's ARN.
SES_PARAM = "SesIdentityArn"
INVITE_PLACEHOLDERS = ("{username}", "{####}", f"${{{ORIGIN_PARAM}}}")
# Self-service sign-up: a switch off by default, which the function refuses to run without the SES
# identity (and the stack refuses to deploy), and the platform's hourly cap, whose default is the code's.
SIGNUP_SWITCH_PARAM = "SelfServiceSignup"
SIGNUP_SWITCH_ENV = "SELF_SERVICE_SIGNUP"
SIGNUP_CAP_PARAM = "SignupHourlyCap"
SIGNUP_CAP_ENV = "SIGNUP_HOURLY_CAP"
SES_ENV = "SES_IDENTITY_ARN"
SIGNUP_CAP_CONST = re.compile(r"pub const DEFAULT_SIGNUP_HOURLY_CAP: u64 = ([0-9_]+);")
CONFIG_RS = ROOT / "shared" / "src" / "config.rs"
# The optional WAF rate-based rule on the sign-up route: off (0) by default.
SIGNUP_WAF_PARAM = "SignupWafRateLimit"
# The erasure receipts' signing key (§22): asymmetric, used by the function that serves the receipt
# (and purges tenants) only, for exactly these actions; and the backup retentions the receipt states,
# each a parameter whose default is the code's (shared::receipt::DEFAULT_BACKUP_BOUNDS).
RECEIPT_KEY = "ReceiptSigningKey"
RECEIPT_KEY_ENV = "RECEIPT_KEY_ID"
RECEIPT_OPERATION = "getTenantReceipt"
RECEIPT_KEY_USE = {"kms:Sign", "kms:GetPublicKey"}
RECEIPT_USE_PROBES = ["kms:Sign", "kms:CreateGrant"]
RECEIPT_RS = ROOT / "shared" / "src" / "receipt.rs"
# parameter, variable, field of DEFAULT_BACKUP_BOUNDS
BACKUP_BOUNDS = [
    ("BackupVaultPitrDays", "BACKUP_VAULT_PITR_DAYS", "vault_pitr_days"),
    ("BackupDataPitrDays", "BACKUP_DATA_PITR_DAYS", "data_pitr_days"),
    ("BackupSnapshotRetentionDays", "BACKUP_SNAPSHOT_RETENTION_DAYS", "snapshot_retention_days"),
    ("BackupCrossRegionCopyRetentionDays", "BACKUP_CROSS_REGION_COPY_RETENTION_DAYS", "cross_region_copy_retention_days"),
    ("ExportExpiryDays", "EXPORT_EXPIRY_DAYS", "export_expiry_days"),
]
# Tenant exports (§22): the jobs worker, its queue and dead-letter queue, and the export bucket. The
# functions that touch them are those whose crate enables the `shared` feature `exports`.
EXPORTS_FEATURE = "exports"
JOBS_BINARY = "tenant-jobs"
JOBS_QUEUE = "JobsQueue"
JOBS_QUEUE_ENV = "JOBS_QUEUE_URL"
EXPORT_BUCKET = "ExportBucket"
EXPORT_BUCKET_ENV = "EXPORT_BUCKET"
EXPORT_EXPIRY_PARAM = "ExportExpiryDays"
EXPORT_EXPIRY_ENV = "EXPORT_EXPIRY_DAYS"
EXPORT_ENV = (EXPORT_BUCKET_ENV, JOBS_QUEUE_ENV, EXPORT_EXPIRY_ENV)
# The ARN every object grant names: the export files' prefix (shared::exports::tenant_prefix), never the
# whole bucket.
EXPORT_OBJECTS = "${ExportBucket.Arn}/exports/*"
EXPORTS_RS = ROOT / "shared" / "src" / "exports.rs"
EXPIRY_BOUNDS = re.compile(r"\((\d+)\.\.=(\d+)\)\.contains\(d\)")
OBJECT_ACTIONS = {"s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:AbortMultipartUpload"}
LIST_EXPORTS = {"s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads"}
DELETE_EXPORTS = {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:AbortMultipartUpload"}
# What the SQS event source needs of its function's role.
SQS_POLL = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
# binary -> (object actions on EXPORT_OBJECTS, bucket actions on the bucket, actions on the jobs queue),
# exactly. Multipart uploads are s3:PutObject.
EXPORT_ACCESS = {
    # Writes the files and reads them back (digests, restores), deletes a failed export's; polls the
    # queue through its event source and re-queues an unfinished job.
    JOBS_BINARY: (DELETE_EXPORTS | {"s3:PutObject", "s3:GetObject"}, LIST_EXPORTS, SQS_POLL | {"sqs:SendMessage"}),
    # Queues export jobs and pre-signs the download URLs (a URL carries its signer's permission).
    "tenants": ({"s3:GetObject"}, set(), {"sqs:SendMessage"}),
    # The purge and a person's erasure delete export files; they read none.
    "onboarding": (DELETE_EXPORTS, LIST_EXPORTS, set()),
    "users": (DELETE_EXPORTS, LIST_EXPORTS, set()),
}
# S3 uses the bucket's KMS key with the caller's own permission: what each object action needs of the
# key policy (a multipart upload decrypts too).
S3_KMS_USE = {"s3:PutObject": {"kms:GenerateDataKey", "kms:Decrypt"}, "s3:GetObject": {"kms:Decrypt"}}
# Binaries whose crate enables shared/exports for a sibling binary (the users crate, for a person's
# erasure), and which touch no export themselves: no bucket, no queue, no grant.
EXPORTS_FREE_SIBLINGS = {"post-confirmation"}


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


# ------------------------------------------------------------------ crates and their `shared` features (`cognito`, `kms`)


def dependency_tables(manifest: dict) -> list[dict]:
    """Runtime dependency tables: [dependencies] and every [target.*.dependencies] (not dev/build)."""
    tables = [manifest.get("dependencies") or {}]
    for target in (manifest.get("target") or {}).values():
        if isinstance(target, dict):
            tables.append(target.get("dependencies") or {})
    return tables


def shared_feature_table() -> dict:
    """The `shared` crate's own [features] table."""
    path = ROOT / "shared" / "Cargo.toml"
    if not path.exists():
        return {}
    return parse_toml(path).get("features") or {}


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


def shared_features_enabled(manifest: dict, workspace_shared: dict, shared_features: dict) -> frozenset[str]:
    """The `shared` features a crate turns on: those its dependency on `shared` lists (its own and the
    workspace's), shared's default unless default-features = false, and the `shared/x` its own default
    features name; closed over shared's own [features] table (a feature that enables another)."""
    roots: set[str] = set()
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
            roots |= feats
            if default_features:
                roots.add("default")
    own_features = manifest.get("features") or {}
    roots |= expand_features(own_features, ["default"], prefix="shared")
    return frozenset(roots | expand_features(shared_features, sorted(roots), prefix=None))


def scan_crates() -> dict[str, tuple[str, frozenset[str]]]:
    """binary name -> (crate directory name, the `shared` features its crate enables)."""
    root_manifest = parse_toml(ROOT / "Cargo.toml")
    workspace_shared = ((root_manifest.get("workspace") or {}).get("dependencies") or {}).get("shared") or {}
    if not isinstance(workspace_shared, dict):
        workspace_shared = {}
    shared_features = shared_feature_table()
    binaries: dict[str, tuple[str, frozenset[str]]] = {}
    for cargo in sorted(FUNCTIONS_DIR.glob("*/Cargo.toml")):
        manifest = parse_toml(cargo)
        crate = cargo.parent.name
        enabled = shared_features_enabled(manifest, workspace_shared, shared_features)
        bins = [b.get("name") for b in manifest.get("bin") or [] if b.get("name")]
        if not bins and (cargo.parent / "src" / "main.rs").exists():
            bins = [(manifest.get("package") or {}).get("name", crate)]
        for name in bins:
            require(name not in binaries, f"binary {name!r} is defined by two crates: {binaries.get(name, ('?',))[0]} and {crate}")
            binaries[name] = (crate, enabled)
    return binaries


def crates_enabling(crates: dict[str, tuple[str, frozenset[str]]], feature: str) -> list[str]:
    """The crate directories whose crate enables shared/<feature>."""
    return sorted({crate for crate, enabled in crates.values() if feature in enabled})


def cognito_callers(template: dict) -> tuple[dict[str, str], str]:
    """function logical id -> binary, for every function that calls Cognito; plus the source used."""
    crates = scan_crates()
    fns = {name: binary_of(r) for name, r in functions(template).items()}
    if crates_enabling(crates, COGNITO_FEATURE):
        source = "code (crates enabling shared/cognito: " + ", ".join(crates_enabling(crates, COGNITO_FEATURE)) + ")"
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
                not (binary == AUTHORIZER_BINARY and COGNITO_FEATURE in crates[binary][1]),
                f"{name}: the authorizer only verifies tokens; its crate {crates[binary][0]} must not enable shared/cognito",
            )
            if COGNITO_FEATURE in crates[binary][1] and binary != TRIGGER_BINARY and binary not in COGNITO_FREE_SIBLINGS:
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
    require(callers, "no function calls Cognito; expected at least users, onboarding and migrations")
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
            # SAM's `!Ref Function.Alias` / `.Version` name resources generated from Function.
            return {node["Ref"], node["Ref"].split(".")[0]} & names
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


def generated_roles(template: dict) -> dict[str, str]:
    """The role SAM generates for each function without an explicit Role: role logical id -> function."""
    return {f"{name}Role": name for name, r in functions(template).items() if "Role" not in (r.get("Properties") or {})}


# The function properties SAM moves into the role it generates.
ROLE_PROPERTIES = ("Policies", "PermissionsBoundary", "AssumeRolePolicyDocument", "RolePath")


def check_no_cycles(template: dict) -> str:
    res = resources(template)
    roles = generated_roles(template)
    # `!GetAtt XFunctionRole.Arn` (the PII key's policy) names a generated role: model it as a resource.
    names = set(res) | set(roles)
    graph: dict[str, set[str]] = {}
    for role, function in roles.items():
        function_props = res[function].get("Properties") or {}
        graph[role] = references({k: function_props[k] for k in ROLE_PROPERTIES if k in function_props}, names)
    for name, r in res.items():
        props = dict(r.get("Properties") or {})
        if r.get("Type") == "AWS::Serverless::Function":
            # Event sources expand into their own resources (rule, permission, pool LambdaConfig): the
            # function itself does not reference what its Events name.
            props.pop("Events", None)
        deps = references(props, names)
        deps |= set(as_list(r.get("DependsOn"))) & names
        if f"{name}Role" in roles:
            deps.add(f"{name}Role")  # the function's Role is !GetAtt its generated role
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
    return (
        f"{len(graph)} resources, no dependency cycle (generated roles, Cognito trigger, OpenAPI integrations and "
        "authorizer included)"
    )


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


def is_preflight_mock(method: str, op: dict) -> bool:
    return method == "OPTIONS" and (op.get("x-amazon-apigateway-integration") or {}).get("type") == "mock"


def check_operation_security(template: dict) -> str:
    """(h) Every operation states exactly one security requirement. An operation that integrates a
    function uses TenantAuth, unless COGNITO_OPERATIONS names it for that function: then CognitoAuth.
    Two exceptions are unauthenticated (security: []): a CORS preflight, an OPTIONS mock, since
    browsers send preflights without credentials (it reaches no function); and the operations that
    ANONYMOUS_OPERATIONS names for the function they integrate (self-service sign-up), each of which
    must declare its 429. Every name in either list must match an operation as stated."""
    document = load_openapi()
    schemes = set(((document.get("components") or {}).get("securitySchemes")) or {})
    ops = operations(document)
    require(ops, "openapi.json has no operations")
    counts: dict[str, int] = {}
    cognito_seen: set[tuple[str, str]] = set()
    anonymous_seen: set[tuple[str, str]] = set()
    for method, path, op in ops:
        where = f"{method} {path}"
        security = op.get("security")
        if is_preflight_mock(method, op):
            require(security == [], f"{where}: a CORS preflight must be unauthenticated (security: []), found {security!r}")
            counts["none (CORS preflight mock)"] = counts.get("none (CORS preflight mock)", 0) + 1
            continue
        if security == []:
            function, operation_id = function_of(op), op.get("operationId")
            require(
                function is not None and operation_id in ANONYMOUS_OPERATIONS.get(function, ()),
                f"{where} ({operation_id}): unauthenticated (security: []) but not a CORS preflight mock, and "
                f"ANONYMOUS_OPERATIONS does not name it for the function it integrates ({function}); only "
                f"{sorted(f'{f}.{o}' for f, o_ in ANONYMOUS_OPERATIONS.items() for o in o_)} may be anonymous",
            )
            require("429" in (op.get("responses") or {}), f"{where} ({operation_id}): an anonymous operation must declare its 429 (its bounds)")
            anonymous_seen.add((function, operation_id))
            counts["none (anonymous)"] = counts.get("none (anonymous)", 0) + 1
            continue
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
        if function is not None:
            operation_id = op.get("operationId")
            if operation_id in COGNITO_OPERATIONS.get(function, ()):
                expected = COGNITO_AUTH
                cognito_seen.add((function, operation_id))
            else:
                expected = TENANT_AUTH
            require(
                scheme == expected,
                f"{where} ({operation_id}): integrates {function}, so it must use {expected}, not {scheme}"
                + ("" if expected == COGNITO_AUTH else " (a superadmin-only operation is named in COGNITO_OPERATIONS)"),
            )
        counts[scheme] = counts.get(scheme, 0) + 1
    stale = sorted(f"{f}.{o}" for f, ops_ in COGNITO_OPERATIONS.items() for o in ops_ if (f, o) not in cognito_seen)
    require(not stale, f"COGNITO_OPERATIONS names operations that openapi.json does not integrate with that function: {stale}")
    stale = sorted(f"{f}.{o}" for f, ops_ in ANONYMOUS_OPERATIONS.items() for o in ops_ if (f, o) not in anonymous_seen)
    require(not stale, f"ANONYMOUS_OPERATIONS names operations that openapi.json does not integrate, unauthenticated, with that function: {stale}")
    require(TENANT_AUTH in counts, f"no operation uses {TENANT_AUTH}")
    return f"{len(ops)} operations, one requirement each but the preflights: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items()))


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


# ------------------------------------------------------------------ the data URI secret


def parameters(template: dict) -> dict:
    return template.get("Parameters") or {}


def pattern_accepts(pattern: str, value: str) -> bool:
    """CloudFormation matches an AllowedPattern against the whole value."""
    return re.fullmatch(pattern, value) is not None


def require_secret_arn_parameter(params: dict, name: str, holds: str, sample_secret: str) -> None:
    """A String parameter whose AllowedPattern admits a Secrets Manager secret's ARN and nothing else."""
    require(name in params, f"no parameter {name} (the secret holding {holds})")
    param = params[name]
    require(param.get("Type") == "String", f"{name}: Type must be String, found {param.get('Type')!r}")
    pattern = param.get("AllowedPattern")
    require(isinstance(pattern, str), f"{name}: needs an AllowedPattern for a Secrets Manager ARN")
    require(
        pattern_accepts(pattern, f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{sample_secret}"),
        f"{name}: AllowedPattern {pattern!r} refuses a Secrets Manager secret ARN",
    )
    for bad in ("mongodb+srv://user:pass@cluster.example/", "arn:aws:ssm:us-east-1:123456789012:parameter/uri"):
        require(not pattern_accepts(pattern, bad), f"{name}: AllowedPattern {pattern!r} accepts {bad!r}, not a secret ARN")


def check_data_uri_secret(template: dict) -> str:
    """(l) The data URI comes from a Secrets Manager secret: no plain or NoEcho URI parameter, no
    MONGODB_URI anywhere, and every function has the secret's ARN and may read exactly that secret
    (and, for the functions that use the key vault, the vault's URI secret: (x))."""
    params = parameters(template)
    require_secret_arn_parameter(params, SECRET_PARAM, "the MongoDB connection string", "tenancy/mongodb-uri-AbCdEf")
    for name, p in params.items():
        text = f"{name} {p.get('Description') or ''}".lower()
        # A NoEcho parameter is still plain text wherever the template puts it (an environment variable).
        require(
            not (p.get("NoEcho") in (True, "true") and any(w in text for w in ("uri", "mongodb", "connection string"))),
            f"parameter {name}: a NoEcho connection string still lands in plain text; pass the secret's ARN ({SECRET_PARAM})",
        )
    globals_env = ((((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get("Variables")) or {}
    require(PLAIN_URI_ENV not in globals_env, f"Globals sets {PLAIN_URI_ENV}: readable by anyone with lambda:GetFunctionConfiguration")
    fns = functions(template)
    for name, resource in sorted(fns.items()):
        own_env = (((resource.get("Properties") or {}).get("Environment") or {}).get("Variables")) or {}
        require(PLAIN_URI_ENV not in own_env, f"{name}: sets {PLAIN_URI_ENV}: readable by anyone with lambda:GetFunctionConfiguration")
        env = effective_env(template, resource)
        require(
            env.get(SECRET_ENV) == {"Ref": SECRET_PARAM},
            f"{name}: {SECRET_ENV} must be !Ref {SECRET_PARAM} (Globals or its own), found {env.get(SECRET_ENV)!r}",
        )
        grants = [
            s for s in function_policy_statements(name, resource)
            if s.get("Effect") == "Allow" and SECRET_ACTION in as_list(s.get("Action"))
        ]
        require(
            any(as_list(s.get("Resource")) == [{"Ref": SECRET_PARAM}] for s in grants),
            f"{name}: no statement allows {SECRET_ACTION} (Sid ReadDataUriSecret) on !Ref {SECRET_PARAM}",
        )
        for s in grants:
            # The key vault's URI is the one other secret; (x) holds who may read it.
            require(
                as_list(s.get("Resource")) in READABLE_SECRETS,
                f"{name}: {SECRET_ACTION} must be granted on exactly !Ref {SECRET_PARAM} (or !Ref {VAULT_SECRET_PARAM}), "
                f"found {s.get('Resource')!r}",
            )
    # No statement anywhere reads secrets more widely.
    for path, s in all_statements(template.get("Resources") or {}, "Resources"):
        actions = [a for a in as_list(s.get("Action")) if not isinstance(a, str) or a.lower().startswith("secretsmanager:") or a == "*"]
        if s.get("Effect") == "Allow" and actions and "Principal" not in s:
            require(
                as_list(s.get("Resource")) in READABLE_SECRETS,
                f"{path}: grants {actions} on {s.get('Resource')!r}; only !Ref {SECRET_PARAM} (and !Ref {VAULT_SECRET_PARAM}) may be read",
            )
    return f"{len(fns)} functions read the data URI from !Ref {SECRET_PARAM} ({SECRET_ENV}), none has {PLAIN_URI_ENV}"


# ------------------------------------------------------------------ setup on deploy and the snapshot


def migrations_function(template: dict) -> tuple[str, dict]:
    matches = [(n, r) for n, r in functions(template).items() if binary_of(r) == MIGRATIONS_BINARY]
    require(len(matches) == 1, f"expected exactly one function building {MIGRATIONS_BINARY!r}, found {[n for n, _ in matches]}")
    return matches[0]


def function_timeout(template: dict, resource: dict) -> int:
    timeout = (resource.get("Properties") or {}).get("Timeout")
    if timeout is None:
        timeout = ((template.get("Globals") or {}).get("Function") or {}).get("Timeout", 3)
    require(isinstance(timeout, int) and not isinstance(timeout, bool), f"a function Timeout must be a number, found {timeout!r}")
    return timeout


def check_setup_on_deploy(template: dict) -> str:
    """(m) A custom resource runs the migrations function's setup on every deploy of new code, and
    CloudFormation waits for it no shorter than the function may run."""
    name, resource = migrations_function(template)
    props = resource.get("Properties") or {}
    alias = props.get("AutoPublishAlias")
    require(isinstance(alias, str) and alias, f"{name}: needs AutoPublishAlias (a version per code change, for {SETUP_RESOURCE})")
    res = resources(template)
    require(SETUP_RESOURCE in res, f"no resource {SETUP_RESOURCE}: nothing builds the indexes before the first request")
    setup = res[SETUP_RESOURCE]
    kind = setup.get("Type") or ""
    require(
        kind.startswith("Custom::") or kind == "AWS::CloudFormation::CustomResource",
        f"{SETUP_RESOURCE}: must be a custom resource, found {kind!r}",
    )
    sprops = setup.get("Properties") or {}
    tokens = ({"Ref": f"{name}.Alias"}, {"Ref": f"{name}Alias{alias}"})
    require(
        sprops.get("ServiceToken") in tokens,
        f"{SETUP_RESOURCE}: ServiceToken must be the migrations function's alias (!Ref {name}.Alias), found {sprops.get('ServiceToken')!r}",
    )
    require(
        sprops.get("CodeVersion") == {"Ref": f"{name}.Version"},
        f"{SETUP_RESOURCE}: CodeVersion must be !Ref {name}.Version, so that new code re-runs setup; found {sprops.get('CodeVersion')!r}",
    )
    log_group = next(
        (
            n for n, r in res.items()
            if r.get("Type") == "AWS::Logs::LogGroup"
            and sub_text((r.get("Properties") or {}).get("LogGroupName")) == f"/aws/lambda/${{{name}}}"
        ),
        None,
    )
    # Otherwise the first invocation may create the log group, and the stack's own then fails to.
    require(
        log_group is not None and log_group in as_list(setup.get("DependsOn")),
        f"{SETUP_RESOURCE}: must DependsOn {name}'s log group ({log_group}), or its first run creates it and the stack's fails",
    )
    service_timeout = sprops.get("ServiceTimeout")
    require(
        isinstance(service_timeout, int) and not isinstance(service_timeout, bool),
        f"{SETUP_RESOURCE}: ServiceTimeout must be set (seconds), found {service_timeout!r}",
    )
    timeout = function_timeout(template, resource)
    require(
        timeout <= service_timeout <= 3600,
        f"{SETUP_RESOURCE}: ServiceTimeout {service_timeout} must be at least {name}'s Timeout {timeout} "
        "(CloudFormation would give up on a run still in progress) and at most 3600",
    )
    return f"{SETUP_RESOURCE} invokes {name} (alias {alias}) per code version; ServiceTimeout {service_timeout}s >= Timeout {timeout}s"


def check_usage_snapshot_schedule(template: dict) -> str:
    """(n) The data growth snapshot runs on its own schedule, as a migrations action."""
    name, resource = migrations_function(template)
    events = ((resource.get("Properties") or {}).get("Events")) or {}
    found = []
    for event_name, e in events.items():
        if not (isinstance(e, dict) and e.get("Type") == "Schedule"):
            continue
        eprops = e.get("Properties") or {}
        raw = eprops.get("Input")
        try:
            value = json.loads(raw) if isinstance(raw, str) else None
        except json.JSONDecodeError:
            raise CheckFailed(f"{name}: schedule {event_name} has an Input that is not JSON: {raw!r}")
        if value != USAGE_SNAPSHOT_INPUT:
            continue
        expr = eprops.get("Schedule")
        require(
            isinstance(expr, dict) and expr.get("Ref") in parameters(template),
            f"{name}: schedule {event_name} must take its expression from a parameter, found {expr!r}",
        )
        require(eprops.get("State", "ENABLED") == "ENABLED", f"{name}: schedule {event_name} must be ENABLED")
        found.append(f"{event_name} (!Ref {expr['Ref']})")
    require(found, f"{name}: no Schedule event with Input {json.dumps(USAGE_SNAPSHOT_INPUT)} (the data growth snapshot)")
    return f"{name}: usage snapshot on " + ", ".join(found)


# ------------------------------------------------------------------ CORS and the gateway responses


def resolve_parameter(document: dict, param: dict) -> dict:
    ref = param.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/parameters/"):
        return ((document.get("components") or {}).get("parameters") or {}).get(ref.rsplit("/", 1)[1]) or {}
    return param


def quoted_literal(value) -> str | None:
    """API Gateway's static header value: a string in single quotes."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    return None


def check_cors_preflights(template: dict) -> str:
    """(o) Every path has an unauthenticated OPTIONS mock naming the admin origin parameter and exactly
    the path's methods; the origin parameter admits no wildcard; the functions get it as CORS_ALLOWED_ORIGIN."""
    params = parameters(template)
    require(ORIGIN_PARAM in params, f"no parameter {ORIGIN_PARAM} (the admin panel's origin)")
    pattern = params[ORIGIN_PARAM].get("AllowedPattern")
    require(isinstance(pattern, str), f"{ORIGIN_PARAM}: needs an AllowedPattern (one exact origin)")
    default = params[ORIGIN_PARAM].get("Default")
    if default is not None:
        require(pattern_accepts(pattern, str(default)), f"{ORIGIN_PARAM}: its Default {default!r} fails its own AllowedPattern")
    for bad in ("*", "https://*.example.com", "null", "https://admin.example.com/", "https://a.example.com,https://b.example.com"):
        require(not pattern_accepts(pattern, bad), f"{ORIGIN_PARAM}: AllowedPattern {pattern!r} accepts {bad!r}; only one exact origin may be allowed")
    globals_env = ((((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get("Variables")) or {}
    require(
        globals_env.get(ORIGIN_ENV) == {"Ref": ORIGIN_PARAM},
        f"Globals: {ORIGIN_ENV} must be !Ref {ORIGIN_PARAM} (the functions' own CORS headers), found {globals_env.get(ORIGIN_ENV)!r}",
    )

    document = load_openapi()
    paths = document.get("paths") or {}
    require(paths, "openapi.json has no paths")
    op_ids = [op.get("operationId") for _, _, op in operations(document)]
    duplicates = sorted({i for i in op_ids if i is not None and op_ids.count(i) > 1})
    require(not duplicates, f"openapi.json: operationIds must be unique, repeated: {duplicates}")
    for path, item in paths.items():
        where = f"OPTIONS {path}"
        methods = [m.upper() for m in METHODS if m != "options" and isinstance(item.get(m), dict)]
        op = item.get("options")
        require(isinstance(op, dict), f"{path}: no OPTIONS operation; a browser's preflight for {methods} would fail")
        require(op.get("security") == [], f"{where}: must be unauthenticated (security: []), found {op.get('security')!r}")
        declared = {
            resolve_parameter(document, p).get("name")
            for p in list(item.get("parameters") or []) + list(op.get("parameters") or [])
            if resolve_parameter(document, p).get("in") == "path"
        }
        missing = set(re.findall(r"\{([^}]+)\}", path)) - declared
        require(not missing, f"{where}: path parameters {sorted(missing)} are not declared")
        integration = op.get("x-amazon-apigateway-integration") or {}
        require(integration.get("type") == "mock", f"{where}: must be a mock integration, found {integration.get('type')!r}")
        template_text = (integration.get("requestTemplates") or {}).get("application/json")
        require(
            isinstance(template_text, str) and json.loads(template_text) == {"statusCode": 200},
            f"{where}: requestTemplates application/json must be {{\"statusCode\": 200}}, found {template_text!r}",
        )
        default_response = (integration.get("responses") or {}).get("default") or {}
        require(default_response.get("statusCode") == "200", f"{where}: responses.default.statusCode must be \"200\"")
        answer = default_response.get("responseParameters") or {}
        header = lambda h: answer.get(f"method.response.header.{h}")  # noqa: E731
        require(
            header("Access-Control-Allow-Origin") == ORIGIN_SUB,
            f"{where}: Access-Control-Allow-Origin must be {json.dumps(ORIGIN_SUB)}, found {header('Access-Control-Allow-Origin')!r}",
        )
        allowed = quoted_literal(header("Access-Control-Allow-Methods"))
        require(allowed is not None, f"{where}: Access-Control-Allow-Methods must be a quoted literal, found {header('Access-Control-Allow-Methods')!r}")
        listed = [m.strip().upper() for m in allowed.split(",")]
        require(
            len(listed) == len(set(listed)) and set(listed) == set(methods) | {"OPTIONS"},
            f"{where}: Access-Control-Allow-Methods must be the path's methods {methods} and OPTIONS, found {allowed!r}",
        )
        request_headers = quoted_literal(header("Access-Control-Allow-Headers"))
        require(request_headers is not None, f"{where}: Access-Control-Allow-Headers must be a quoted literal")
        lacking = PREFLIGHT_REQUEST_HEADERS - {h.strip().lower() for h in request_headers.split(",")}
        require(not lacking, f"{where}: Access-Control-Allow-Headers lacks {sorted(lacking)}")
        max_age = quoted_literal(header("Access-Control-Max-Age"))
        require(max_age is not None and max_age.isdigit(), f"{where}: Access-Control-Max-Age must be a quoted number of seconds")
        # API Gateway refuses a response parameter for a header the method response does not declare.
        documented = set((((op.get("responses") or {}).get("200") or {}).get("headers")) or {})
        for key in answer:
            name = key.removeprefix("method.response.header.")
            require(name in documented, f"{where}: response 200 must declare header {name} (its integration sets it)")
        require(set(PREFLIGHT_HEADERS) <= documented, f"{where}: response 200 must declare {list(PREFLIGHT_HEADERS)}")
    return f"{len(paths)} paths, each with an unauthenticated OPTIONS mock for !Ref {ORIGIN_PARAM} and exactly its methods"


def check_no_cors_credentials(template: dict) -> str:
    """(p) CORS never allows credentials (callers send Bearer tokens or keys, never cookies), and no
    Access-Control-Allow-Origin is a wildcard."""
    for path in (TEMPLATE, OPENAPI):
        text = path.read_text(encoding="utf-8").lower()
        require("access-control-allow-credentials" not in text, f"{path.name} mentions Access-Control-Allow-Credentials; credentials are never allowed")
    wildcards = []

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and key.lower().endswith("access-control-allow-origin") and isinstance(value, str) and "*" in value:
                    wildcards.append(f"{where}/{key}")
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(load_openapi(), "openapi.json")
    walk(template.get("Resources") or {}, "Resources")
    require(not wildcards, f"wildcard Access-Control-Allow-Origin at {wildcards}")
    return "no Access-Control-Allow-Credentials anywhere, no wildcard origin"


def check_gateway_responses(template: dict) -> str:
    """(q) Every gateway response (the defaults, the authorizer's refusals, throttling) answers our error
    envelope and carries the admin origin, so that a browser can read the error."""
    responses = load_openapi().get("x-amazon-apigateway-gateway-responses") or {}
    for name, status in REQUIRED_GATEWAY_RESPONSES.items():
        require(name in responses, f"openapi.json x-amazon-apigateway-gateway-responses has no {name}")
        if status is not None:
            found = responses[name].get("statusCode")
            require(found == status, f"gateway response {name}: statusCode must be \"{status}\", found {found!r}")
    for name, response in responses.items():
        headers = response.get("responseParameters") or {}
        require(
            headers.get("gatewayresponse.header.Access-Control-Allow-Origin") == ORIGIN_SUB,
            f"gateway response {name}: gatewayresponse.header.Access-Control-Allow-Origin must be {json.dumps(ORIGIN_SUB)}",
        )
        require(
            headers.get("gatewayresponse.header.Vary") == "'Origin'",
            f"gateway response {name}: gatewayresponse.header.Vary must be \"'Origin'\"",
        )
        body = (response.get("responseTemplates") or {}).get("application/json")
        require(isinstance(body, str), f"gateway response {name}: no application/json responseTemplate")
        require(
            "$context.error.messageString" in body and "\"$context.requestId\"" in body,
            f"gateway response {name}: the envelope must take message from $context.error.messageString and "
            f"requestId from \"$context.requestId\", found {body!r}",
        )
        # messageString renders as a quoted JSON string: stand in a sample of each.
        sample = body.replace("$context.error.messageString", "\"Unauthorized\"").replace("$context.requestId", "req-1")
        try:
            envelope = json.loads(sample)
        except json.JSONDecodeError as err:
            raise CheckFailed(f"gateway response {name}: the envelope is not JSON once rendered ({err}): {body!r}")
        require(
            isinstance(envelope, dict) and set(envelope) == {"error", "message", "requestId"},
            f"gateway response {name}: the envelope must have exactly error, message and requestId, found {sorted(envelope) if isinstance(envelope, dict) else envelope!r}",
        )
        require(isinstance(envelope["error"], str) and envelope["error"], f"gateway response {name}: error must be a non-empty reason")
    return f"{len(responses)} gateway responses: error envelope, admin origin and Vary: Origin"


def check_throttling(template: dict) -> str:
    """(r) Stage throttling from parameters, with metrics; no usage plan (they need API Gateway-managed keys)."""
    params = parameters(template)
    apis = [(n, r) for n, r in resources(template).items() if r.get("Type") == "AWS::Serverless::Api"]
    require(apis, "no AWS::Serverless::Api")
    for name, api in apis:
        props = api.get("Properties") or {}
        settings = [
            m for m in as_list(props.get("MethodSettings"))
            if isinstance(m, dict) and m.get("ResourcePath") == "/*" and m.get("HttpMethod") == "*"
        ]
        require(settings, f"{name}: needs a MethodSettings entry for ResourcePath \"/*\", HttpMethod \"*\"")
        for setting in settings:
            require(setting.get("MetricsEnabled") is True, f"{name}: MethodSettings must keep MetricsEnabled: true")
            for key, param in THROTTLING_PARAMS.items():
                require(setting.get(key) == {"Ref": param}, f"{name}: MethodSettings {key} must be !Ref {param}, found {setting.get(key)!r}")
                require((params.get(param) or {}).get("Type") == "Number", f"parameter {param} must exist with Type Number")
        auth = props.get("Auth") or {}
        require("UsagePlan" not in auth and not auth.get("ApiKeyRequired"), f"{name}: no usage plan or API Gateway key; our keys are our own")
    plans = [n for n, r in resources(template).items() if r.get("Type") in ("AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey")]
    require(not plans, f"usage plans need API Gateway-managed keys, ours are our own: remove {plans}")
    return "stage throttling from " + " and ".join(THROTTLING_PARAMS.values()) + ", metrics on, no usage plan"


# ------------------------------------------------------------------ metrics, alarms and the dashboard


def alarm_metrics(props: dict) -> list[tuple[str, str, dict]]:
    """(namespace, metric name, {dimension: value}) for an alarm: its one metric, or each MetricStat of its math."""
    def one(metric: dict) -> tuple[str, str, dict]:
        dims = {d.get("Name"): d.get("Value") for d in as_list(metric.get("Dimensions")) if isinstance(d, dict)}
        return metric.get("Namespace"), metric.get("MetricName"), dims

    if "Metrics" in props:
        return [one((m.get("MetricStat") or {}).get("Metric") or {}) for m in as_list(props["Metrics"]) if isinstance(m, dict) and "MetricStat" in m]
    return [one(props)]


def alarms(template: dict) -> dict[str, dict]:
    return {n: (r.get("Properties") or {}) for n, r in resources(template).items() if r.get("Type") == "AWS::CloudWatch::Alarm"}


def check_metrics_env(template: dict) -> str:
    """(s) Every function's metric lines name the stack as Service, the value the alarms watch."""
    for name, resource in sorted(functions(template).items()):
        env = effective_env(template, resource)
        require(env.get(METRICS_ENV) == STACK_NAME, f"{name}: {METRICS_ENV} must be !Ref AWS::StackName, found {env.get(METRICS_ENV)!r}")
    return f"{len(functions(template))} functions: {METRICS_ENV} = !Ref AWS::StackName"


def check_alarms(template: dict) -> str:
    """(t) Every alarm notifies the topic (and when it clears); the topic mails the AlarmEmail parameter; the
    promised alarms exist and watch this stack's Service."""
    res = resources(template)
    require((res.get(ALARM_TOPIC) or {}).get("Type") == "AWS::SNS::Topic", f"no AWS::SNS::Topic named {ALARM_TOPIC}")
    key = (res[ALARM_TOPIC].get("Properties") or {}).get("KmsMasterKeyId")
    # CloudWatch cannot use the AWS managed key: alarms on such a topic fire and notify no one.
    require(
        not (isinstance(key, str) and key.lower().endswith("alias/aws/sns")),
        f"{ALARM_TOPIC}: encrypted with alias/aws/sns, which CloudWatch alarms cannot publish with; use a customer-managed key",
    )
    param = parameters(template).get(ALARM_EMAIL_PARAM)
    require(param is not None and param.get("AllowedPattern"), f"no parameter {ALARM_EMAIL_PARAM} with an AllowedPattern")
    subscriptions = [
        n for n, r in res.items()
        if r.get("Type") == "AWS::SNS::Subscription"
        and (r.get("Properties") or {}).get("TopicArn") == {"Ref": ALARM_TOPIC}
        and (r.get("Properties") or {}).get("Protocol") == "email"
        and (r.get("Properties") or {}).get("Endpoint") == {"Ref": ALARM_EMAIL_PARAM}
    ]
    require(subscriptions, f"no AWS::SNS::Subscription of {ALARM_TOPIC}, Protocol email, Endpoint !Ref {ALARM_EMAIL_PARAM}")
    found = alarms(template)
    require(found, "no AWS::CloudWatch::Alarm")
    watched: set[str] = set()
    for name, props in sorted(found.items()):
        for field in ("AlarmActions", "OKActions"):
            require({"Ref": ALARM_TOPIC} in as_list(props.get(field)), f"{name}: {field} must include !Ref {ALARM_TOPIC}")
        require(props.get("TreatMissingData") == "notBreaching", f"{name}: TreatMissingData must be notBreaching")
        for namespace, metric, dims in alarm_metrics(props):
            if namespace == METRICS_NAMESPACE:
                require(
                    dims.get("Service") == STACK_NAME,
                    f"{name}: {metric} must have the dimension Service = !Ref AWS::StackName (what {METRICS_ENV} emits)",
                )
                watched.add(metric)
    missing = ALARMED_METRICS - watched
    require(not missing, f"no alarm in namespace {METRICS_NAMESPACE} watches {sorted(missing)}")
    latency = [p for p in found.values() if any(m == "Latency" for _, m, _ in alarm_metrics(p))]
    require(any(p.get("ExtendedStatistic") == "p99" for p in latency), "the Latency alarm must use ExtendedStatistic p99")
    return f"{len(found)} alarms notify {ALARM_TOPIC} (mailed to !Ref {ALARM_EMAIL_PARAM}); watched: {', '.join(sorted(watched))}"


def check_dashboard(template: dict) -> str:
    """(u) The dashboard's body is valid JSON, graphs every alarmed metric, and ranks tenants by ApiCalls
    from every HTTP function's log group."""
    dashboards = [(n, r.get("Properties") or {}) for n, r in resources(template).items() if r.get("Type") == "AWS::CloudWatch::Dashboard"]
    require(dashboards, "no AWS::CloudWatch::Dashboard")
    name, props = dashboards[0]
    text = sub_text(props.get("DashboardBody"))
    require(isinstance(text, str), f"{name}: DashboardBody must be a JSON string (plain or !Sub)")
    try:
        # Each ${X} becomes <X>: the body must be JSON with any value, and the queries keep their names.
        body = json.loads(re.sub(r"\$\{([^}]+)\}", r"<\1>", text))
    except json.JSONDecodeError as err:
        raise CheckFailed(f"{name}: DashboardBody is not JSON once substituted: {err}")
    widgets = body.get("widgets") if isinstance(body, dict) else None
    require(isinstance(widgets, list) and widgets, f"{name}: DashboardBody has no widgets")
    alarmed = {m for p in alarms(template).values() for ns, m, _ in alarm_metrics(p) if ns == METRICS_NAMESPACE}
    absent = sorted(m for m in alarmed if f'"{m}"' not in text)
    require(not absent, f"{name}: graphs none of the alarmed metrics {absent}")
    log_groups = {}
    for lname, r in resources(template).items():
        m = re.fullmatch(r"/aws/lambda/\$\{([A-Za-z0-9]+)\}", sub_text((r.get("Properties") or {}).get("LogGroupName")) or "")
        if r.get("Type") == "AWS::Logs::LogGroup" and m:
            log_groups[m.group(1)] = lname
    queries = [
        (w.get("properties") or {}).get("query") or "" for w in widgets
        if isinstance(w, dict) and w.get("type") == "log"
    ]
    ranking = [q for q in queries if "sum(ApiCalls)" in q and "by tenantId" in q]
    require(ranking, f"{name}: no Logs Insights widget ranking tenants by ApiCalls (stats sum(ApiCalls) ... by tenantId)")
    http_functions = sorted(integration_functions() & set(functions(template)))
    for function in http_functions:
        sources = (f"<{log_groups.get(function)}>", f"/aws/lambda/<{function}>")
        require(
            any(any(s in q for s in sources) for q in ranking),
            f"{name}: the ApiCalls ranking must read {function}'s log group (${{{log_groups.get(function)}}})",
        )
    return f"{name}: {len(widgets)} widgets, graphs {', '.join(sorted(alarmed))}; ranks tenants over {len(http_functions)} HTTP functions"


def emf_capture() -> tuple[dict[tuple[str, str, frozenset], set[tuple]], int, int, Path]:
    """Every (namespace, metric, dimension set) the captured EMF lines emit, with the dimension values seen."""
    directory = Path(os.environ.get(EMF_CAPTURE_ENV) or EMF_CAPTURE_DEFAULT)
    files = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
    emitted: dict[tuple[str, str, frozenset], set[tuple]] = {}
    lines = 0
    for path in files:
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError as err:
                raise CheckFailed(f"{path}:{number}: not JSON ({err})")
            directives = ((line.get("_aws") or {}).get("CloudWatchMetrics")) if isinstance(line, dict) else None
            if not isinstance(directives, list):
                continue
            lines += 1
            for directive in directives:
                namespace = directive.get("Namespace")
                for dimset in directive.get("Dimensions") or []:
                    # CloudWatch drops a dimension set whose values the line does not carry.
                    if not all(isinstance(d, str) and d in line for d in dimset):
                        continue
                    values = tuple(sorted((d, line[d]) for d in dimset if isinstance(line[d], str)))
                    for metric in directive.get("Metrics") or []:
                        name = metric.get("Name") if isinstance(metric, dict) else None
                        if name in line:
                            emitted.setdefault((namespace, name, frozenset(dimset)), set()).add(values)
    return emitted, lines, len(files), directory


def check_alarms_watch_emitted_metrics(template: dict) -> str:
    """(v) Every alarm on our own metrics watches a (namespace, metric, dimension set) that the captured EMF
    lines emit, with any fixed dimension value seen too: an alarm on anything else never fires.
    Alarms in AWS/* namespaces watch what AWS emits and are exempt."""
    emitted, lines, files, directory = emf_capture()
    require(
        lines > 0,
        f"no EMF lines captured in {directory} ({files} *.jsonl file(s)). The capture comes from the Rust test "
        f"`binaries`, run by scripts/test.sh: run the cargo tests first (scripts/test.sh), or point {EMF_CAPTURE_ENV} at a capture",
    )
    checked = 0
    for name, props in sorted(alarms(template).items()):
        for namespace, metric, dims in alarm_metrics(props):
            if isinstance(namespace, str) and namespace.startswith("AWS/"):
                continue
            key = (namespace, metric, frozenset(dims))
            if key not in emitted:
                seen = sorted(sorted(k[2]) for k in emitted if k[0] == namespace and k[1] == metric)
                raise CheckFailed(
                    f"{name}: watches {namespace}/{metric} by {sorted(dims)}, never emitted in {lines} captured lines"
                    + (f"; emitted by {seen}" if seen else f"; {metric} is never emitted in {namespace}")
                )
            fixed = {d: v for d, v in dims.items() if isinstance(v, str)}
            if fixed:
                require(
                    any(fixed.items() <= dict(values).items() for values in emitted[key]),
                    f"{name}: watches {metric} with {fixed}, but no captured line has those values",
                )
            checked += 1
    return f"{checked} alarmed metrics emitted, in {lines} EMF lines from {files} file(s) in {directory}"


def check_code_uris(template: dict) -> str:
    """Each function's CodeUri is the directory of the crate that defines its binary. SAM runs
    cargo-lambda there (`--bin X`), so cargo selects that package alone and resolves the `shared`
    features for it: a function links only the AWS SDKs its own crate enables. From the workspace
    root every member would be selected, and every function would link every SDK."""
    binaries = scan_crates()
    seen = []
    for name, resource in functions(template).items():
        binary = binary_of(resource)
        require(binary in binaries, f"{name}: no crate under functions/ defines the binary {binary!r}")
        crate = binaries[binary][0]
        code_uri = (resource.get("Properties") or {}).get("CodeUri")
        require(code_uri == f"functions/{crate}", f"{name}: CodeUri is {code_uri!r}, not its crate functions/{crate}")
        seen.append(binary)
    return f"{len(seen)} functions build from their own crate"


# ------------------------------------------------------------------ personal data: the KMS master key and the key vault


def kms_users(template: dict) -> tuple[dict[str, str], list[str]]:
    """function logical id -> binary, for every function whose crate enables shared/kms; plus those crates."""
    crates = scan_crates()
    users = {
        name: binary for name, r in functions(template).items()
        if (binary := binary_of(r)) in crates and KMS_FEATURE in crates[binary][1]
    }
    return users, crates_enabling(crates, KMS_FEATURE)


def key_policy_principals(statement: dict) -> list[tuple[str, object]]:
    """(kind, value) for each principal of a key policy statement: ("AWS", arn), ("Service", name), ("*", "*")."""
    principal = statement.get("Principal")
    if principal == "*":
        return [("*", "*")]
    if isinstance(principal, dict):
        return [(kind, value) for kind, values in principal.items() for value in as_list(values)]
    return [("?", principal)]


def is_account_root(value) -> bool:
    text = sub_text(value)
    return value == {"Ref": "AWS::AccountId"} or (
        isinstance(text, str) and (text == ACCOUNT_ROOT or re.fullmatch(r"arn:aws[a-z-]*:iam::[0-9]{12}:root|[0-9]{12}", text) is not None)
    )


def getatt_arn_of(value) -> str | None:
    """X for !GetAtt X.Arn (either form), else None."""
    att = value.get("Fn::GetAtt") if isinstance(value, dict) else None
    if isinstance(att, list) and len(att) == 2 and att[1] == "Arn":
        return att[0]
    if isinstance(att, str) and att.endswith(".Arn"):
        return att[: -len(".Arn")]
    return None


def use_actions_matched(pattern) -> list[str]:
    """The key-use actions an action pattern covers (fnmatch, case-insensitive, as IAM matches)."""
    if not isinstance(pattern, str):
        return list(KMS_USE_PROBES)  # an intrinsic we cannot read: treat as covering everything
    return [probe for probe in KMS_USE_PROBES if fnmatch.fnmatchcase(probe.lower(), pattern.lower())]


def pii_key_aliases(template: dict, key: str) -> dict[str, str]:
    """alias logical id -> its AliasName's text, for every AWS::KMS::Alias targeting the key."""
    return {
        name: sub_text((r.get("Properties") or {}).get("AliasName")) or ""
        for name, r in resources(template).items()
        if r.get("Type") == "AWS::KMS::Alias" and permission_target((r.get("Properties") or {}).get("TargetKeyId")) == key
    }


def check_pii_key(template: dict) -> str:
    """(x) The personal-data master key (§12): one symmetric KMS key, rotated and retained, that the account
    administers but never uses (no action pattern of its administration covers GenerateDataKey*, Decrypt,
    Encrypt, ReEncrypt* or CreateGrant), and that exactly the roles of the functions whose crate enables
    shared/kms may use, for GenerateDataKey and Decrypt only. Those functions, and no others, have
    KMS_KEY_ID, KEY_VAULT_DATABASE and KEY_VAULT_URI_SECRET_ARN and may read the key vault's URI secret."""
    res = resources(template)
    keys = [n for n, r in res.items() if r.get("Type") == "AWS::KMS::Key"]
    marked = [
        n for n in keys
        if n == PII_KEY
        or re.search(r"\bpii\b|personal data", str((res[n].get("Properties") or {}).get("Description") or ""), re.I)
        or any(re.search(r"pii", text, re.I) for text in pii_key_aliases(template, n).values())
    ]
    require(len(marked) == 1, f"expected exactly one KMS key for personal data ({PII_KEY}, or a description or alias naming PII), found {marked}")
    key = marked[0]
    resource = res[key]
    props = resource.get("Properties") or {}
    for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
        require(
            resource.get(policy) == "Retain",
            f"{key}: {policy} must be Retain (losing the key makes every tenant's personal data unreadable), found {resource.get(policy)!r}",
        )
    require(props.get("EnableKeyRotation") is True, f"{key}: EnableKeyRotation must be true, found {props.get('EnableKeyRotation')!r}")
    require(props.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT", f"{key}: must be a symmetric key (KeySpec SYMMETRIC_DEFAULT)")
    require(props.get("KeyUsage", "ENCRYPT_DECRYPT") == "ENCRYPT_DECRYPT", f"{key}: KeyUsage must be ENCRYPT_DECRYPT")
    require(props.get("Enabled", True) is not False, f"{key}: must be Enabled")

    # The key policy.
    policy = props.get("KeyPolicy")
    require(isinstance(policy, dict), f"{key}: KeyPolicy must be a policy document, found {type(policy).__name__}")
    statements = as_list(policy.get("Statement"))
    require(statements, f"{key}: KeyPolicy has no Statement")
    roles = generated_roles(template)
    admin_patterns: list[str] = []
    admin_sids: list[str] = []
    grantees: dict[str, set[str]] = {action: set() for action in PII_KEY_USE}
    for i, s in enumerate(statements):
        sid = s.get("Sid") or f"Statement[{i}]"
        if s.get("Effect") != "Allow":
            continue
        require("NotAction" not in s, f"{key}: {sid} allows with NotAction, which covers the key's use")
        require("NotPrincipal" not in s, f"{key}: {sid} allows with NotPrincipal, which names everyone else")
        principals = key_policy_principals(s)
        actions = as_list(s.get("Action"))
        if any(kind == "AWS" and is_account_root(value) for kind, value in principals):
            admin_sids.append(sid)
            admin_patterns.extend(a for a in actions if isinstance(a, str))
        using = {a if isinstance(a, str) else json.dumps(a): use_actions_matched(a) for a in actions}
        using = {a: matched for a, matched in using.items() if matched}
        if not using:
            continue
        # A statement that uses the key: it names function roles only, and exactly GenerateDataKey and Decrypt.
        for kind, value in principals:
            target = getatt_arn_of(value) if kind == "AWS" else None
            require(
                target in roles,
                f"{key}: {sid} grants {sorted(using)} (covering {sorted({m for ms in using.values() for m in ms})}) to "
                f"{'the account root' if kind == 'AWS' and is_account_root(value) else json.dumps(value)}; only the roles "
                f"of the functions enabling shared/{KMS_FEATURE} may use the key (!GetAtt <Function>Role.Arn)",
            )
        for action in using:
            require(
                action in PII_KEY_USE,
                f"{key}: {sid} grants {action!r}; the functions' roles get exactly {sorted(PII_KEY_USE)}, no wildcard, nothing else",
            )
            grantees[action] |= {roles[getatt_arn_of(value)] for _, value in principals}
    require(admin_sids, f"{key}: no statement lets the account root ({ACCOUNT_ROOT}) administer the key")
    for probe in KMS_ADMIN_PROBES:
        require(
            any(fnmatch.fnmatchcase(probe.lower(), p.lower()) for p in admin_patterns),
            f"{key}: the account's administration ({', '.join(admin_sids)}) must cover {probe}",
        )

    # Who uses it: the functions whose crate enables shared/kms, read from the code.
    users, crates = kms_users(template)
    granted = sorted(set().union(*grantees.values()))
    require(
        users,
        f"no functions/*/Cargo.toml enables shared/{KMS_FEATURE}, but {key}'s policy lets {granted} use the key: "
        f"the code and the template disagree (shared/Cargo.toml declares [features] {KMS_FEATURE}, and each crate that "
        "encrypts personal data enables it on its shared dependency)",
    )
    print(f"   KMS users from code (crates enabling shared/{KMS_FEATURE}: {', '.join(crates)}): " + ", ".join(f"{n} ({b})" for n, b in sorted(users.items())))
    missing_users = sorted(REQUIRED_KMS_BINARIES - set(users.values()))
    require(
        not missing_users,
        f"the binaries {missing_users} seal or open personal data, but no function building them uses {key} "
        f"(each one's crate enables shared/{KMS_FEATURE}, and its role is in the key policy)",
    )
    for action in sorted(PII_KEY_USE):
        require(
            grantees[action] == set(users),
            f"{key}: {action} must be granted to the roles of exactly {sorted(users)}; "
            f"missing {sorted(set(users) - grantees[action])}, extra {sorted(grantees[action] - set(users))}",
        )

    # The key vault's parameters, and the environment and grants of each function.
    params = parameters(template)
    require_secret_arn_parameter(params, VAULT_SECRET_PARAM, "the key vault's MongoDB connection string", "tenancy/key-vault-uri-GhIjKl")
    vault_db = params.get(VAULT_DB_PARAM) or {}
    require(vault_db.get("Type") == "String", f"no String parameter {VAULT_DB_PARAM} (the key vault's database)")
    data_db = (params.get("MongoDbDatabase") or {}).get("Default")
    require(
        vault_db.get("Default") is not None and vault_db.get("Default") != data_db,
        f"{VAULT_DB_PARAM}: needs a Default other than MongoDbDatabase's ({data_db!r}): where both share a cluster (locally), "
        "the vault is a second database",
    )
    globals_env = ((((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get("Variables")) or {}
    in_globals = [v for v in VAULT_ENV if v in globals_env]
    require(not in_globals, f"Globals sets {in_globals}: only the functions enabling shared/{KMS_FEATURE} may have them")
    aliases = pii_key_aliases(template, key)
    key_ids = [{"Fn::GetAtt": [key, "Arn"]}, {"Fn::GetAtt": f"{key}.Arn"}]
    alias_arns = {f"arn:${{AWS::Partition}}:kms:${{AWS::Region}}:${{AWS::AccountId}}:{text}" for text in aliases.values()}
    by_alias = []
    vault_names = {key, VAULT_SECRET_PARAM, VAULT_DB_PARAM} | set(aliases)
    fns = functions(template)
    for name, fn in sorted(fns.items()):
        env = effective_env(template, fn)
        statements = function_policy_statements(name, fn)
        reads_vault = [
            s for s in statements
            if s.get("Effect") == "Allow" and SECRET_ACTION in as_list(s.get("Action"))
            and as_list(s.get("Resource")) == [{"Ref": VAULT_SECRET_PARAM}]
        ]
        if name not in users:
            has = [v for v in VAULT_ENV if v in env]
            require(not has, f"{name} ({binary_of(fn)}): its crate does not enable shared/{KMS_FEATURE}, but it has {has}")
            named = sorted(references(fn.get("Properties") or {}, vault_names))
            require(not named, f"{name} ({binary_of(fn)}): its crate does not enable shared/{KMS_FEATURE}, but it references {named}")
            continue
        value = env.get(PII_KEY_ENV)
        if sub_text(value) in alias_arns and not isinstance(value, str):
            by_alias.append(name)
        else:
            require(
                value in key_ids,
                f"{name}: {PII_KEY_ENV} must be !GetAtt {key}.Arn (or the ARN of its alias, "
                f"{sorted(alias_arns) or 'no alias'}), found {value!r}",
            )
        require(env.get(VAULT_DB_ENV) == {"Ref": VAULT_DB_PARAM}, f"{name}: {VAULT_DB_ENV} must be !Ref {VAULT_DB_PARAM}, found {env.get(VAULT_DB_ENV)!r}")
        require(
            env.get(VAULT_SECRET_ENV) == {"Ref": VAULT_SECRET_PARAM},
            f"{name}: {VAULT_SECRET_ENV} must be !Ref {VAULT_SECRET_PARAM}, found {env.get(VAULT_SECRET_ENV)!r}",
        )
        require(reads_vault, f"{name}: no statement allows {SECRET_ACTION} (Sid ReadKeyVaultUriSecret) on exactly !Ref {VAULT_SECRET_PARAM}")
    return (
        f"{key}: rotated, retained; {', '.join(admin_sids)} administers without use; {' and '.join(sorted(PII_KEY_USE))} "
        f"to the roles of exactly {', '.join(sorted(users))}"
        + (f" ({', '.join(by_alias)} by the alias's ARN)" if by_alias else "")
        + f", each with {', '.join(VAULT_ENV)} and !Ref {VAULT_SECRET_PARAM} readable; {len(fns) - len(users)} other functions have none"
    )


# ------------------------------------------------------------------ the saga sweep and the invitation e-mail


def check_sweep_schedule(template: dict) -> str:
    """(y) The onboarding function sweeps the sagas on an enabled schedule from a parameter, and takes the
    rule's own Scheduled Event (no Input: the binary knows it by the rule's name)."""
    fns = functions(template)
    matches = [(n, r) for n, r in fns.items() if binary_of(r) == SWEEP_BINARY]
    require(len(matches) == 1, f"expected exactly one function building {SWEEP_BINARY!r}, found {[n for n, _ in matches]}")
    name, resource = matches[0]
    events = ((resource.get("Properties") or {}).get("Events")) or {}
    schedules = {n: e for n, e in events.items() if isinstance(e, dict) and e.get("Type") == "Schedule"}
    require(schedules, f"{name}: needs an Events entry of Type Schedule (the saga sweep)")
    for event_name, e in schedules.items():
        eprops = e.get("Properties") or {}
        expr = eprops.get("Schedule")
        require(
            isinstance(expr, dict) and expr.get("Ref") in parameters(template),
            f"{name}: schedule {event_name} must take its expression from a parameter, found {expr!r}",
        )
        require(eprops.get("State", "ENABLED") == "ENABLED", f"{name}: schedule {event_name} must be ENABLED")
        require(
            "Input" not in eprops and "InputPath" not in eprops,
            f"{name}: schedule {event_name} must deliver EventBridge's own Scheduled Event (no Input): the binary "
            "takes it by its rule's name",
        )
    return f"{name}: sweep on " + ", ".join(f"{n} (!Ref {e['Properties']['Schedule']['Ref']})" for n, e in schedules.items())


def condition_is_parameter_set(template: dict, condition: str, param: str) -> bool:
    """Whether a Condition reads exactly "the parameter is not empty"."""
    expr = (template.get("Conditions") or {}).get(condition)
    return expr == {"Fn::Not": [{"Fn::Equals": [{"Ref": param}, ""]}]} or expr == {"Fn::Not": [{"Fn::Equals": ["", {"Ref": param}]}]}


def conditional_on(value, condition_names: set[str]) -> tuple[str, object] | None:
    """(condition, value when true) for !If [C, value, !Ref AWS::NoValue], else None."""
    branches = value.get("Fn::If") if isinstance(value, dict) else None
    if isinstance(branches, list) and len(branches) == 3 and branches[0] in condition_names and branches[2] == {"Ref": "AWS::NoValue"}:
        return branches[0], branches[1]
    return None


def check_invitation_email(template: dict) -> str:
    """(z) The pool sends through SES (EmailSendingAccount DEVELOPER, SourceArn the SES identity parameter)
    and with the platform's invitation (the e-mail, the temporary password and the admin panel's URL) only
    when that parameter is set, both under the one condition that says so: Cognito refuses a custom
    invitation from its default account, and with the parameter empty its default message is used."""
    params = parameters(template)
    require(SES_PARAM in params, f"no parameter {SES_PARAM} (a verified SES identity for the invitations)")
    param = params[SES_PARAM]
    require(param.get("Default") == "", f"{SES_PARAM}: its Default must be the empty string (Cognito's default sender), found {param.get('Default')!r}")
    pattern = param.get("AllowedPattern")
    require(isinstance(pattern, str), f"{SES_PARAM}: needs an AllowedPattern")
    for good in ("", "arn:aws:ses:us-east-1:123456789012:identity/mail.example.com"):
        require(pattern_accepts(pattern, good), f"{SES_PARAM}: AllowedPattern {pattern!r} refuses {good!r}")
    for bad in ("mail.example.com", "arn:aws:sns:us-east-1:123456789012:topic"):
        require(not pattern_accepts(pattern, bad), f"{SES_PARAM}: AllowedPattern {pattern!r} accepts {bad!r}, not an SES identity ARN")
    conditions = {c for c in (template.get("Conditions") or {}) if condition_is_parameter_set(template, c, SES_PARAM)}
    require(conditions, f"no Condition reads !Not [!Equals [!Ref {SES_PARAM}, \"\"]]")
    pools = [(n, r) for n, r in resources(template).items() if r.get("Type") == "AWS::Cognito::UserPool"]
    for name, pool in pools:
        props = pool.get("Properties") or {}
        email = conditional_on(props.get("EmailConfiguration"), conditions)
        require(
            email is not None,
            f"{name}: EmailConfiguration must be !If [<{SES_PARAM} is set>, {{...}}, !Ref AWS::NoValue], found {props.get('EmailConfiguration')!r}",
        )
        condition, config = email
        require(
            isinstance(config, dict) and config.get("EmailSendingAccount") == "DEVELOPER" and config.get("SourceArn") == {"Ref": SES_PARAM},
            f"{name}: with {condition}, EmailConfiguration must be EmailSendingAccount DEVELOPER and SourceArn !Ref {SES_PARAM}, found {config!r}",
        )
        invite = conditional_on(((props.get("AdminCreateUserConfig") or {}).get("InviteMessageTemplate")), {condition})
        require(
            invite is not None,
            f"{name}: AdminCreateUserConfig.InviteMessageTemplate must be !If [{condition}, {{...}}, !Ref AWS::NoValue] "
            "(Cognito's default account takes no custom invitation)",
        )
        template_ = invite[1] if isinstance(invite[1], dict) else {}
        subject = sub_text(template_.get("EmailSubject"))
        require(isinstance(subject, str) and subject.strip(), f"{name}: the invitation needs an EmailSubject")
        message = sub_text(template_.get("EmailMessage")) or ""
        lacking = [p for p in INVITE_PLACEHOLDERS if p not in message]
        require(not lacking, f"{name}: the invitation's EmailMessage lacks {lacking} (the e-mail, the temporary password, the login URL)")
        require(
            f"${{{ORIGIN_PARAM}}}" not in message or isinstance(template_.get("EmailMessage"), dict),
            f"{name}: the invitation's EmailMessage names ${{{ORIGIN_PARAM}}} but is no !Sub",
        )
    return f"{len(pools)} pool(s): SES sender and the platform's invitation only under {', '.join(sorted(conditions))}"


def anonymous_operations() -> list[tuple[str, str, str]]:
    """(method, path, integrated function) of every operation ANONYMOUS_OPERATIONS names, as openapi.json has it."""
    return [
        (method, path, function_of(op))
        for method, path, op in operations(load_openapi())
        if op.get("operationId") in ANONYMOUS_OPERATIONS.get(function_of(op), ())
    ]


def check_signup_switch(template: dict) -> str:
    """(aa) Self-service sign-up is a switch, off by default, that the function serving it reads from a
    parameter (true or false only), with the platform's hourly cap (its default the code's) and the SES
    identity the function refuses to start without; a rule refuses the switch on with no SES identity at
    deploy time. No other function carries the switch."""
    params = parameters(template)
    switch = params.get(SIGNUP_SWITCH_PARAM)
    require(switch is not None, f"no parameter {SIGNUP_SWITCH_PARAM} (self-service sign-up's switch)")
    require(switch.get("Type") == "String", f"{SIGNUP_SWITCH_PARAM}: must be a String, found {switch.get('Type')!r}")
    require(
        sorted(str(v) for v in as_list(switch.get("AllowedValues"))) == ["false", "true"],
        f"{SIGNUP_SWITCH_PARAM}: AllowedValues must be exactly \"true\" and \"false\", found {switch.get('AllowedValues')!r}",
    )
    require(str(switch.get("Default")) == "false", f"{SIGNUP_SWITCH_PARAM}: must default to \"false\" (off), found {switch.get('Default')!r}")
    cap = params.get(SIGNUP_CAP_PARAM)
    require(cap is not None and cap.get("Type") == "Number", f"no Number parameter {SIGNUP_CAP_PARAM} (the platform's sign-ups an hour)")
    require(str(cap.get("MinValue")) == "1", f"{SIGNUP_CAP_PARAM}: MinValue must be 1 (the code refuses 0), found {cap.get('MinValue')!r}")
    found = SIGNUP_CAP_CONST.search(CONFIG_RS.read_text(encoding="utf-8"))
    require(found is not None, f"{CONFIG_RS.relative_to(ROOT)}: no DEFAULT_SIGNUP_HOURLY_CAP")
    code_default = found.group(1).replace("_", "")
    require(
        str(cap.get("Default")) == code_default,
        f"{SIGNUP_CAP_PARAM}: Default {cap.get('Default')!r} differs from the code's DEFAULT_SIGNUP_HOURLY_CAP {code_default}",
    )

    served = anonymous_operations()
    require(served, "no operation of ANONYMOUS_OPERATIONS in openapi.json: nothing serves self-service sign-up")
    serving = {function for _, _, function in served}
    fns = functions(template)
    for function in sorted(serving):
        require(function in fns, f"{function} serves {sorted(p for _, p, f in served if f == function)} but is not a function")
        env = effective_env(template, fns[function])
        for variable, param in ((SIGNUP_SWITCH_ENV, SIGNUP_SWITCH_PARAM), (SIGNUP_CAP_ENV, SIGNUP_CAP_PARAM), (SES_ENV, SES_PARAM)):
            require(
                env.get(variable) == {"Ref": param},
                f"{function}: Environment.Variables.{variable} must be !Ref {param}, found {env.get(variable)!r}",
            )
    others = sorted(n for n, r in fns.items() if n not in serving and SIGNUP_SWITCH_ENV in effective_env(template, r))
    require(not others, f"{others}: carry {SIGNUP_SWITCH_ENV} but serve no sign-up")

    on = {"Fn::Equals": [{"Ref": SIGNUP_SWITCH_PARAM}, "true"]}
    ses_set = [{"Fn::Not": [{"Fn::Equals": [{"Ref": SES_PARAM}, ""]}]}, {"Fn::Not": [{"Fn::Equals": ["", {"Ref": SES_PARAM}]}]}]
    refusing = [
        name
        for name, rule in ((template.get("Rules") or {}).items())
        if isinstance(rule, dict)
        and rule.get("RuleCondition") in (on, {"Fn::Equals": ["true", {"Ref": SIGNUP_SWITCH_PARAM}]})
        and any(isinstance(a, dict) and a.get("Assert") in ses_set for a in as_list(rule.get("Assertions")))
    ]
    require(
        refusing,
        f"no rule in Rules refuses {SIGNUP_SWITCH_PARAM}=true with an empty {SES_PARAM} "
        f"(RuleCondition !Equals [!Ref {SIGNUP_SWITCH_PARAM}, \"true\"], Assert !Not [!Equals [!Ref {SES_PARAM}, \"\"]])",
    )
    return (
        f"{', '.join(sorted(serving))}: {SIGNUP_SWITCH_ENV} (default false), {SIGNUP_CAP_ENV} (default {code_default}) and "
        f"{SES_ENV} from their parameters; rule {', '.join(refusing)} refuses the switch without SES"
    )


def check_signup_waf(template: dict) -> str:
    """(ab) The WAF rate-based rule on the sign-up route exists only under a condition that reads "the
    limit parameter is not 0", which is its default: a REGIONAL web ACL that allows by default, with one
    rule that blocks an IP address past the parameter's limit, counted only on requests whose URI path
    ends with each anonymous operation's path, associated with the API's stage once SAM has made it."""
    params = parameters(template)
    param = params.get(SIGNUP_WAF_PARAM)
    require(param is not None and param.get("Type") == "Number", f"no Number parameter {SIGNUP_WAF_PARAM} (the WAF rule's limit, 0 = off)")
    require(str(param.get("Default")) == "0", f"{SIGNUP_WAF_PARAM}: must default to 0 (no web ACL), found {param.get('Default')!r}")
    conditions = {
        name
        for name, expr in (template.get("Conditions") or {}).items()
        if any(
            expr == {"Fn::Not": [{"Fn::Equals": pair}]}
            for zero in (0, "0")
            for pair in ([{"Ref": SIGNUP_WAF_PARAM}, zero], [zero, {"Ref": SIGNUP_WAF_PARAM}])
        )
    }
    require(conditions, f"no Condition reads !Not [!Equals [!Ref {SIGNUP_WAF_PARAM}, 0]]")
    res = resources(template)
    waf = {n: r for n, r in res.items() if str(r.get("Type", "")).startswith("AWS::WAFv2::")}
    require(waf, "no AWS::WAFv2 resource: the sign-up route's rate-based rule is missing")
    for name, r in sorted(waf.items()):
        require(
            r.get("Condition") in conditions,
            f"{name}: must carry Condition {' or '.join(sorted(conditions))} (off unless {SIGNUP_WAF_PARAM} is set), found {r.get('Condition')!r}",
        )
    acls = {n: r.get("Properties") or {} for n, r in waf.items() if r.get("Type") == "AWS::WAFv2::WebACL"}
    require(len(acls) == 1, f"expected one AWS::WAFv2::WebACL, found {sorted(acls)}")
    ((acl, props),) = acls.items()
    require(props.get("Scope") == "REGIONAL", f"{acl}: Scope must be REGIONAL (an API Gateway REST stage), found {props.get('Scope')!r}")
    require("Allow" in (props.get("DefaultAction") or {}), f"{acl}: DefaultAction must be Allow (it blocks only past the rate)")
    rules = as_list(props.get("Rules"))
    require(len(rules) == 1 and isinstance(rules[0], dict), f"{acl}: must have exactly one rule, found {len(rules)}")
    rule = rules[0]
    require("Block" in (rule.get("Action") or {}), f"{acl}: its rule's Action must be Block, found {rule.get('Action')!r}")
    rate = ((rule.get("Statement") or {}).get("RateBasedStatement")) or {}
    require(rate, f"{acl}: its rule must be a RateBasedStatement")
    require(rate.get("Limit") == {"Ref": SIGNUP_WAF_PARAM}, f"{acl}: Limit must be !Ref {SIGNUP_WAF_PARAM}, found {rate.get('Limit')!r}")
    require(rate.get("AggregateKeyType") == "IP", f"{acl}: AggregateKeyType must be IP, found {rate.get('AggregateKeyType')!r}")
    match = ((rate.get("ScopeDownStatement") or {}).get("ByteMatchStatement")) or {}
    require(
        "UriPath" in (match.get("FieldToMatch") or {}) and match.get("PositionalConstraint") == "ENDS_WITH",
        f"{acl}: the rule must be scoped down by a ByteMatchStatement on UriPath, ENDS_WITH, found {match!r}",
    )
    searched = match.get("SearchString")
    paths = sorted({path for _, path, _ in anonymous_operations()})
    require(paths and all(searched == path for path in paths), f"{acl}: the scope-down must match the anonymous path(s) {paths}, found {searched!r}")

    associations = {n: r.get("Properties") or {} for n, r in waf.items() if r.get("Type") == "AWS::WAFv2::WebACLAssociation"}
    require(len(associations) == 1, f"expected one AWS::WAFv2::WebACLAssociation, found {sorted(associations)}")
    ((association, aprops),) = associations.items()
    require(aprops.get("WebACLArn") == {"Fn::GetAtt": [acl, "Arn"]}, f"{association}: WebACLArn must be !GetAtt {acl}.Arn")
    apis = [n for n, r in res.items() if r.get("Type") == "AWS::Serverless::Api"]
    require(len(apis) == 1, f"expected one AWS::Serverless::Api, found {apis}")
    api = apis[0]
    stage = (res[api].get("Properties") or {}).get("StageName")
    require(isinstance(stage, dict) and "Ref" in stage, f"{api}: StageName must be !Ref a parameter, found {stage!r}")
    arn = sub_text(aprops.get("ResourceArn")) or ""
    wanted = f"arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}::/restapis/${{{api}}}/stages/${{{stage['Ref']}}}"
    require(arn == wanted, f"{association}: ResourceArn must be !Sub \"{wanted}\", found {aprops.get('ResourceArn')!r}")
    # SAM names the stage of an intrinsic StageName <Api>Stage; the association fails without it.
    depends = as_list(res[association].get("DependsOn"))
    require(f"{api}Stage" in depends, f"{association}: must DependsOn {api}Stage (the stage SAM makes), found {depends!r}")
    return (
        f"{acl} and {association} only under {', '.join(sorted(conditions))} ({SIGNUP_WAF_PARAM} default 0): "
        f"IP rate limit !Ref {SIGNUP_WAF_PARAM}, scoped to {paths}, Block, on {api}'s stage"
    )


def check_receipt_key(template: dict) -> str:
    """(ac) The erasure receipts' signing key: one retained ECC_NIST_P256 SIGN_VERIFY key that the account
    administers without signing (no action pattern of its administration covers kms:Sign or CreateGrant),
    and that only the role of the function serving GET /tenants/{tenantId}/receipt may use, for Sign and
    GetPublicKey exactly. That function, and no other, has RECEIPT_KEY_ID (!GetAtt the key's Arn) and the
    backup retentions, each !Ref a Number parameter whose Default is the code's (the export functions also
    carry the export expiry, their own setting: (ae))."""
    res = resources(template)
    signing = sorted(n for n, r in res.items() if r.get("Type") == "AWS::KMS::Key" and (r.get("Properties") or {}).get("KeyUsage") == "SIGN_VERIFY")
    require(signing == [RECEIPT_KEY], f"expected exactly one SIGN_VERIFY KMS key, {RECEIPT_KEY}, found {signing}")
    resource = res[RECEIPT_KEY]
    props = resource.get("Properties") or {}
    for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
        require(resource.get(policy) == "Retain", f"{RECEIPT_KEY}: {policy} must be Retain (receipts given out name it), found {resource.get(policy)!r}")
    require(props.get("KeySpec") == "ECC_NIST_P256", f"{RECEIPT_KEY}: KeySpec must be ECC_NIST_P256, found {props.get('KeySpec')!r}")
    require(props.get("Enabled", True) is not False, f"{RECEIPT_KEY}: must be Enabled")

    served = [function_of(op) for _, _, op in operations(load_openapi()) if op.get("operationId") == RECEIPT_OPERATION]
    require(len(served) == 1, f"openapi.json: expected one operation {RECEIPT_OPERATION}, found {len(served)}")
    signer = served[0]
    fns = functions(template)
    require(signer in fns, f"{RECEIPT_OPERATION} integrates {signer!r}, which is not a function")
    roles = generated_roles(template)
    statements = as_list((props.get("KeyPolicy") or {}).get("Statement"))
    admin: list[str] = []
    granted: dict[str, set[str]] = {}
    for i, st in enumerate(statements):
        sid = st.get("Sid") or f"Statement[{i}]"
        if st.get("Effect") != "Allow":
            continue
        require("NotAction" not in st and "NotPrincipal" not in st, f"{RECEIPT_KEY}: {sid} allows with NotAction or NotPrincipal")
        principals = key_policy_principals(st)
        actions = [a for a in as_list(st.get("Action"))]
        require(all(isinstance(a, str) for a in actions), f"{RECEIPT_KEY}: {sid} has an action that is not a string")
        signs = [a for a in actions if any(fnmatch.fnmatchcase(p.lower(), a.lower()) for p in RECEIPT_USE_PROBES)]
        if any(kind == "AWS" and is_account_root(value) for kind, value in principals):
            require(not signs, f"{RECEIPT_KEY}: {sid} lets the account root use the key ({signs}); it administers only")
            admin.extend(actions)
            continue
        for kind, value in principals:
            role = getatt_arn_of(value) if kind == "AWS" else None
            require(role in roles, f"{RECEIPT_KEY}: {sid} names {json.dumps(value)}; only a function's role (!GetAtt <Function>Role.Arn) may use the key")
            granted.setdefault(roles[role], set()).update(actions)
    require(any(fnmatch.fnmatchcase("kms:putkeypolicy", a.lower()) for a in admin), f"{RECEIPT_KEY}: the account must administer the key (kms:PutKeyPolicy)")
    require(
        granted == {signer: RECEIPT_KEY_USE},
        f"{RECEIPT_KEY}: exactly {signer}'s role may use the key, for {sorted(RECEIPT_KEY_USE)}; found {({k: sorted(v) for k, v in granted.items()})}",
    )

    params = parameters(template)
    code = RECEIPT_RS.read_text(encoding="utf-8")
    block = re.search(r"pub const DEFAULT_BACKUP_BOUNDS: BackupBounds = BackupBounds \{(.*?)\};", code, re.S)
    require(block is not None, f"{RECEIPT_RS.relative_to(ROOT)}: no DEFAULT_BACKUP_BOUNDS")
    defaults = dict(re.findall(r"(\w+): (\d+)", block.group(1)))
    for param, _, field in BACKUP_BOUNDS:
        p = params.get(param) or {}
        require(p.get("Type") == "Number", f"no Number parameter {param}")
        require(str(p.get("Default")) == defaults.get(field), f"{param}: Default {p.get('Default')!r} differs from DEFAULT_BACKUP_BOUNDS.{field} ({defaults.get(field)})")
    variables = [RECEIPT_KEY_ENV] + [v for _, v, _ in BACKUP_BOUNDS]
    for name, fn in sorted(fns.items()):
        env = effective_env(template, fn)
        if name != signer:
            # The export expiry is also the export functions' own setting, checked by (ae).
            shared_with_exports = {EXPORT_EXPIRY_ENV} if binary_of(fn) in EXPORT_ACCESS else set()
            has = [v for v in variables if v in env and v not in shared_with_exports]
            require(not has, f"{name}: has {has}, but only {signer} signs or serves erasure receipts")
            continue
        require(
            env.get(RECEIPT_KEY_ENV) in ({"Fn::GetAtt": [RECEIPT_KEY, "Arn"]}, {"Fn::GetAtt": f"{RECEIPT_KEY}.Arn"}),
            f"{name}: {RECEIPT_KEY_ENV} must be !GetAtt {RECEIPT_KEY}.Arn, found {env.get(RECEIPT_KEY_ENV)!r}",
        )
        for param, variable, _ in BACKUP_BOUNDS:
            require(env.get(variable) == {"Ref": param}, f"{name}: {variable} must be !Ref {param}, found {env.get(variable)!r}")
    return (
        f"{RECEIPT_KEY}: ECC_NIST_P256 SIGN_VERIFY, retained, {' and '.join(sorted(RECEIPT_KEY_USE))} to {signer}'s role only; "
        f"{signer} alone has {RECEIPT_KEY_ENV} and {len(BACKUP_BOUNDS)} backup bounds (but {EXPORT_EXPIRY_ENV}), their defaults the code's"
    )


# ------------------------------------------------------------------ tenant exports: the jobs queue and the export bucket


def service_statements(statements: list[dict], service: str) -> list[dict]:
    """The Allow statements with an action of `service`, or a pattern or intrinsic that could cover one."""
    def covers(action) -> bool:
        if not isinstance(action, str):
            return True
        prefix = action.split(":", 1)[0].lower()
        return prefix == service or "*" in prefix or "?" in prefix

    return [s for s in statements if s.get("Effect") == "Allow" and ("NotAction" in s or any(covers(a) for a in as_list(s.get("Action"))))]


def exact_actions(name: str, statement: dict, service: str) -> list[str]:
    """A statement's actions, each an exact name of `service` (no NotAction, no wildcard, no other service)."""
    require("NotAction" not in statement, f"{name}: a {service} statement uses NotAction: {statement}")
    actions = as_list(statement.get("Action"))
    for a in actions:
        require(
            isinstance(a, str) and a.lower().startswith(f"{service}:") and not any(c in a for c in "*?"),
            f"{name}: {service} statement {statement.get('Sid')!r} has {a!r}; name each {service} action exactly, in a statement of its own service",
        )
    return actions


def export_functions(template: dict) -> dict[str, str]:
    """function logical id -> binary, for every function whose binary EXPORT_ACCESS lists."""
    return {name: binary_of(r) for name, r in functions(template).items() if binary_of(r) in EXPORT_ACCESS}


def denies_insecure_transport(statement: dict, service: str, arns: list) -> bool:
    """Whether a statement denies everyone every `service` action on all of `arns` over plain HTTP."""
    condition = statement.get("Condition") or {}
    insecure = (condition.get("Bool") or {}).get("aws:SecureTransport")
    return (
        statement.get("Effect") == "Deny"
        and statement.get("Principal") in ("*", {"AWS": "*"})
        and any(a in ("*", f"{service}:*") for a in as_list(statement.get("Action")))
        and all(arn in as_list(statement.get("Resource")) for arn in arns)
        and str(insecure).lower() == "false"
    )


def exports_from_code(template: dict) -> str:
    """Every function whose crate enables shared/exports is in EXPORT_ACCESS; a note for those ahead of it."""
    crates = scan_crates()
    pending = []
    for name, resource in sorted(functions(template).items()):
        binary = binary_of(resource)
        enabled = binary in crates and EXPORTS_FEATURE in crates[binary][1] and binary not in EXPORTS_FREE_SIBLINGS
        if enabled:
            require(
                binary in EXPORT_ACCESS,
                f"{name} ({binary}): its crate enables shared/{EXPORTS_FEATURE} but EXPORT_ACCESS does not say what it may do "
                "with the export bucket and the jobs queue",
            )
        elif binary in EXPORT_ACCESS:
            pending.append(f"{name} ({binary})")
    for binary in EXPORT_ACCESS:
        require(any(binary_of(r) == binary for r in functions(template).values()), f"EXPORT_ACCESS names {binary!r}, which no function builds")
    return f"; note: granted ahead of their crate enabling shared/{EXPORTS_FEATURE}: {', '.join(pending)}" if pending else ""


def check_jobs_queue(template: dict) -> str:
    """(ad) The jobs worker takes the jobs queue by an event source mapping of batch size 1 (not SAM's SQS
    event, whose managed policy lets the role poll every queue), on a queue that hides a message for at
    least six times the worker's timeout, is encrypted, denies plain HTTP, and sends a message failed
    too often to an encrypted dead-letter queue that keeps it longer and that an alarm watches. The
    worker's schedule (the sweep of stalled jobs) is enabled, from a parameter, with EventBridge's own
    event. Only the functions EXPORT_ACCESS lists have the queue's URL, and each may do exactly its
    listed actions on exactly the queue's ARN."""
    res = resources(template)
    fns = functions(template)
    workers = [n for n, r in fns.items() if binary_of(r) == JOBS_BINARY]
    require(len(workers) == 1, f"expected exactly one function building {JOBS_BINARY!r}, found {workers}")
    worker = workers[0]
    timeout = function_timeout(template, fns[worker])

    for name, r in sorted(fns.items()):
        sqs_events = [e for e, v in (((r.get("Properties") or {}).get("Events")) or {}).items() if isinstance(v, dict) and v.get("Type") == "SQS"]
        require(
            not sqs_events,
            f"{name}: SAM's SQS event {sqs_events} attaches AWSLambdaSQSQueueExecutionRole (every queue of the account); "
            "declare an AWS::Lambda::EventSourceMapping and grant polling on the one queue",
        )
    mappings = {n: r.get("Properties") or {} for n, r in res.items() if r.get("Type") == "AWS::Lambda::EventSourceMapping"}
    own = {n: p for n, p in mappings.items() if permission_target(p.get("FunctionName")) == worker}
    require(len(own) == 1, f"{worker}: expected exactly one AWS::Lambda::EventSourceMapping, found {sorted(own)}")
    ((mapping, mprops),) = own.items()
    queue = getatt_arn_of(mprops.get("EventSourceArn"))
    require(queue == JOBS_QUEUE, f"{mapping}: EventSourceArn must be !GetAtt {JOBS_QUEUE}.Arn, found {mprops.get('EventSourceArn')!r}")
    others = sorted(n for n, p in mappings.items() if getatt_arn_of(p.get("EventSourceArn")) == JOBS_QUEUE and n != mapping)
    require(not others, f"{others}: only {worker} consumes {JOBS_QUEUE}")
    batch = mprops.get("BatchSize")
    require(batch == 1 and not isinstance(batch, bool), f"{mapping}: BatchSize must be 1 (one job per invocation), found {batch!r}")
    require(mprops.get("Enabled", True) is not False, f"{mapping}: must be Enabled")

    qres = res.get(JOBS_QUEUE) or {}
    require(qres.get("Type") == "AWS::SQS::Queue", f"{JOBS_QUEUE}: must be an AWS::SQS::Queue, found {qres.get('Type')!r}")
    qprops = qres.get("Properties") or {}
    require("QueueName" not in qprops, f"{JOBS_QUEUE}: no QueueName: the local dispatcher knows the queue by CloudFormation's <stack>-{JOBS_QUEUE}-<suffix>")
    visibility = qprops.get("VisibilityTimeout")
    require(
        isinstance(visibility, int) and not isinstance(visibility, bool) and visibility >= 6 * timeout,
        f"{JOBS_QUEUE}: VisibilityTimeout must be at least six times {worker}'s Timeout ({6 * timeout}), found {visibility!r}",
    )

    def encrypted(name: str, props: dict) -> None:
        require(
            props.get("SqsManagedSseEnabled") is True or props.get("KmsMasterKeyId") is not None,
            f"{name}: must be encrypted (SqsManagedSseEnabled: true, or KmsMasterKeyId)",
        )

    encrypted(JOBS_QUEUE, qprops)
    redrive = qprops.get("RedrivePolicy") or {}
    dlq = getatt_arn_of(redrive.get("deadLetterTargetArn"))
    require(dlq is not None and (res.get(dlq) or {}).get("Type") == "AWS::SQS::Queue", f"{JOBS_QUEUE}: RedrivePolicy.deadLetterTargetArn must be !GetAtt <an SQS queue>.Arn, found {redrive!r}")
    receives = redrive.get("maxReceiveCount")
    require(isinstance(receives, int) and not isinstance(receives, bool) and 1 <= receives <= 10, f"{JOBS_QUEUE}: RedrivePolicy.maxReceiveCount must be 1 to 10, found {receives!r}")
    dprops = res[dlq].get("Properties") or {}
    encrypted(dlq, dprops)
    require("RedrivePolicy" not in dprops, f"{dlq}: a dead-letter queue redrives nowhere")
    kept, dlq_kept = qprops.get("MessageRetentionPeriod", 345600), dprops.get("MessageRetentionPeriod", 345600)
    require(
        isinstance(dlq_kept, int) and isinstance(kept, int) and dlq_kept > kept,
        f"{dlq}: MessageRetentionPeriod ({dlq_kept}) must exceed {JOBS_QUEUE}'s ({kept}): a message keeps its first enqueue time",
    )
    queue_name = ({"Fn::GetAtt": [dlq, "QueueName"]}, {"Fn::GetAtt": f"{dlq}.QueueName"})
    watching = [
        n for n, p in alarms(template).items()
        if (p.get("Namespace"), p.get("MetricName")) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        and [d.get("Value") for d in as_list(p.get("Dimensions")) if isinstance(d, dict) and d.get("Name") == "QueueName"] in ([v] for v in queue_name)
        and (p.get("Threshold"), p.get("ComparisonOperator")) in ((0, "GreaterThanThreshold"), (1, "GreaterThanOrEqualToThreshold"))
    ]
    require(watching, f"no alarm on AWS/SQS ApproximateNumberOfMessagesVisible of {dlq} (QueueName !GetAtt {dlq}.QueueName) firing on one message")

    arns = [{"Fn::GetAtt": [JOBS_QUEUE, "Arn"]}, {"Fn::GetAtt": [dlq, "Arn"]}]
    policies = [
        p for p in (r.get("Properties") or {} for r in res.values() if r.get("Type") == "AWS::SQS::QueuePolicy")
        if {"Ref": JOBS_QUEUE} in as_list(p.get("Queues")) and {"Ref": dlq} in as_list(p.get("Queues"))
    ]
    require(
        any(denies_insecure_transport(st, "sqs", arns) for p in policies for st in as_list((p.get("PolicyDocument") or {}).get("Statement"))),
        f"no AWS::SQS::QueuePolicy on {JOBS_QUEUE} and {dlq} denies every sqs action when aws:SecureTransport is false",
    )
    for p in policies:
        allows = [st for st in as_list((p.get("PolicyDocument") or {}).get("Statement")) if st.get("Effect") == "Allow"]
        require(not allows, f"the queue policy of {JOBS_QUEUE} allows {allows}: the functions' roles are the only grants")

    schedules = {n: e for n, e in (((fns[worker].get("Properties") or {}).get("Events")) or {}).items() if isinstance(e, dict) and e.get("Type") == "Schedule"}
    require(schedules, f"{worker}: needs a Schedule event (the sweep of stalled jobs)")
    for event_name, e in schedules.items():
        eprops = e.get("Properties") or {}
        expr = eprops.get("Schedule")
        require(isinstance(expr, dict) and expr.get("Ref") in parameters(template), f"{worker}: schedule {event_name} must take its expression from a parameter")
        require(eprops.get("State", "ENABLED") == "ENABLED", f"{worker}: schedule {event_name} must be ENABLED")
        require("Input" not in eprops and "InputPath" not in eprops, f"{worker}: schedule {event_name} must deliver EventBridge's own Scheduled Event (no Input)")

    queue_arn = ({"Fn::GetAtt": [JOBS_QUEUE, "Arn"]}, {"Fn::GetAtt": f"{JOBS_QUEUE}.Arn"})
    exporters = export_functions(template)
    for name, fn in sorted(fns.items()):
        granted: set[str] = set()
        for st in service_statements(function_policy_statements(name, fn), "sqs"):
            actions = exact_actions(name, st, "sqs")
            require(
                len(as_list(st.get("Resource"))) == 1 and as_list(st.get("Resource"))[0] in queue_arn,
                f"{name}: sqs statement {st.get('Sid')!r} must name exactly !GetAtt {JOBS_QUEUE}.Arn, found {st.get('Resource')!r}",
            )
            granted |= set(actions)
        expected = EXPORT_ACCESS[exporters[name]][2] if name in exporters else set()
        require(granted == expected, f"{name}: sqs actions must be exactly {sorted(expected)}; missing {sorted(expected - granted)}, extra {sorted(granted - expected)}")
        env = effective_env(template, fn)
        if name in exporters:
            require(env.get(JOBS_QUEUE_ENV) == {"Ref": JOBS_QUEUE}, f"{name}: {JOBS_QUEUE_ENV} must be !Ref {JOBS_QUEUE} (its URL), found {env.get(JOBS_QUEUE_ENV)!r}")
        else:
            require(JOBS_QUEUE_ENV not in env, f"{name} ({binary_of(fn)}): has {JOBS_QUEUE_ENV} but EXPORT_ACCESS does not list it")
    require(SQS_POLL <= EXPORT_ACCESS[JOBS_BINARY][2], f"EXPORT_ACCESS: {JOBS_BINARY} must poll its queue ({sorted(SQS_POLL)})")
    return (
        f"{worker} (Timeout {timeout}s) takes {JOBS_QUEUE} by {mapping}, batch size 1; VisibilityTimeout {visibility}s; "
        f"dead letters to {dlq} after {receives} receives, watched by {', '.join(watching)}; TLS only; sweep on "
        + ", ".join(f"{n} (!Ref {e['Properties']['Schedule']['Ref']})" for n, e in schedules.items())
    )


def check_export_bucket(template: dict) -> str:
    """(ae) The export bucket: retained, versioned, encrypted with the personal-data key (its ARN or its
    alias's) under a bucket key, public access blocked four ways, ACLs off, plain HTTP denied, and every
    object expired after ExportExpiryDays (1 or more, within the code's bounds), a noncurrent version and
    an unfinished upload a day later, expired delete markers removed. Only the functions EXPORT_ACCESS
    lists have the bucket, its queue and the expiry, and each may do exactly its listed actions: object
    actions on the exports/ prefix's ARN, list actions on the bucket's. Those that write or read may use
    the key for it."""
    note = exports_from_code(template)
    res = resources(template)
    buckets = sorted(n for n, r in res.items() if r.get("Type") == "AWS::S3::Bucket")
    require(buckets == [EXPORT_BUCKET], f"expected exactly one AWS::S3::Bucket, {EXPORT_BUCKET}, found {buckets}")
    bucket = res[EXPORT_BUCKET]
    for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
        require(bucket.get(policy) == "Retain", f"{EXPORT_BUCKET}: {policy} must be Retain, as for the other data stores, found {bucket.get(policy)!r}")
    props = bucket.get("Properties") or {}
    require("BucketName" not in props, f"{EXPORT_BUCKET}: no BucketName (a stack name may hold capitals, which a bucket name may not)")
    require((props.get("VersioningConfiguration") or {}).get("Status") == "Enabled", f"{EXPORT_BUCKET}: VersioningConfiguration.Status must be Enabled")

    rules = as_list((props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration"))
    require(len(rules) == 1, f"{EXPORT_BUCKET}: BucketEncryption must have exactly one rule, found {len(rules)}")
    default = rules[0].get("ServerSideEncryptionByDefault") or {}
    require(default.get("SSEAlgorithm") == "aws:kms", f"{EXPORT_BUCKET}: SSEAlgorithm must be aws:kms, found {default.get('SSEAlgorithm')!r}")
    alias_arns = {f"arn:${{AWS::Partition}}:kms:${{AWS::Region}}:${{AWS::AccountId}}:{text}" for text in pii_key_aliases(template, PII_KEY).values()}
    key_id = default.get("KMSMasterKeyID")
    require(
        getatt_arn_of(key_id) == PII_KEY or (isinstance(key_id, dict) and sub_text(key_id) in alias_arns),
        f"{EXPORT_BUCKET}: KMSMasterKeyID must be !GetAtt {PII_KEY}.Arn or its alias's ARN {sorted(alias_arns)}, found {key_id!r}",
    )
    require(rules[0].get("BucketKeyEnabled") is True, f"{EXPORT_BUCKET}: BucketKeyEnabled must be true")
    block = props.get("PublicAccessBlockConfiguration") or {}
    for setting in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
        require(block.get(setting) is True, f"{EXPORT_BUCKET}: PublicAccessBlockConfiguration.{setting} must be true")
    ownership = [r.get("ObjectOwnership") for r in as_list((props.get("OwnershipControls") or {}).get("Rules"))]
    require(ownership == ["BucketOwnerEnforced"], f"{EXPORT_BUCKET}: OwnershipControls must be BucketOwnerEnforced (no ACLs), found {ownership}")

    lifecycle = [r for r in as_list((props.get("LifecycleConfiguration") or {}).get("Rules")) if isinstance(r, dict) and r.get("Status") == "Enabled"]
    whole = [r for r in lifecycle if r.get("Prefix", "") in ("", "exports/") and not r.get("TagFilters") and "ObjectSizeGreaterThan" not in r and "ObjectSizeLessThan" not in r]
    expiring = [r for r in whole if r.get("ExpirationInDays") == {"Ref": EXPORT_EXPIRY_PARAM}]
    require(expiring, f"{EXPORT_BUCKET}: no enabled lifecycle rule on every export file with ExpirationInDays !Ref {EXPORT_EXPIRY_PARAM}")

    def after_a_day(rule: dict, field: str, days: str) -> bool:
        value = (rule.get(field) or {}).get(days)
        return value == 1 and not isinstance(value, bool)

    require(any(after_a_day(r, "NoncurrentVersionExpiration", "NoncurrentDays") for r in whole), f"{EXPORT_BUCKET}: noncurrent versions must expire after 1 day")
    require(any(after_a_day(r, "AbortIncompleteMultipartUpload", "DaysAfterInitiation") for r in whole), f"{EXPORT_BUCKET}: unfinished uploads must be aborted after 1 day")
    require(any(r.get("ExpiredObjectDeleteMarker") is True for r in whole), f"{EXPORT_BUCKET}: no enabled rule removes expired delete markers")

    param = parameters(template).get(EXPORT_EXPIRY_PARAM) or {}
    bounds = EXPIRY_BOUNDS.search(EXPORTS_RS.read_text(encoding="utf-8"))
    require(bounds is not None, f"{EXPORTS_RS.relative_to(ROOT)}: no ({{min}}..={{max}}).contains(d) bound on {EXPORT_EXPIRY_ENV}")
    low, high = int(bounds.group(1)), int(bounds.group(2))
    require(low >= 1, f"{EXPORTS_RS.relative_to(ROOT)}: the expiry's lower bound {low} is below S3's 1 day")
    require(
        (param.get("MinValue"), param.get("MaxValue")) == (low, high),
        f"{EXPORT_EXPIRY_PARAM}: MinValue and MaxValue must be the code's bounds ({low}, {high}), found {(param.get('MinValue'), param.get('MaxValue'))}",
    )
    require(low <= int(param.get("Default", 0)) <= high, f"{EXPORT_EXPIRY_PARAM}: Default {param.get('Default')!r} is outside its bounds")

    bucket_arn = ({"Fn::GetAtt": [EXPORT_BUCKET, "Arn"]}, {"Fn::GetAtt": f"{EXPORT_BUCKET}.Arn"})
    policies = [(r.get("Properties") or {}) for r in res.values() if r.get("Type") == "AWS::S3::BucketPolicy"]
    policies = [p for p in policies if p.get("Bucket") == {"Ref": EXPORT_BUCKET}]
    statements = [st for p in policies for st in as_list((p.get("PolicyDocument") or {}).get("Statement"))]
    require(
        any(denies_insecure_transport(st, "s3", [bucket_arn[0], {"Fn::Sub": "${ExportBucket.Arn}/*"}]) for st in statements),
        f"no AWS::S3::BucketPolicy on {EXPORT_BUCKET} denies every s3 action on the bucket and its objects when aws:SecureTransport is false",
    )
    allows = [st for st in statements if st.get("Effect") == "Allow"]
    require(not allows, f"{EXPORT_BUCKET}'s policy allows {allows}: the functions' roles are the only grants")

    # Who may do what, and the key's use through S3.
    roles = generated_roles(template)
    key_grants: dict[str, set[str]] = {}
    for st in as_list(((res[PII_KEY].get("Properties") or {}).get("KeyPolicy") or {}).get("Statement")):
        if st.get("Effect") == "Allow":
            for kind, value in key_policy_principals(st):
                if kind == "AWS" and getatt_arn_of(value) in roles:
                    key_grants.setdefault(roles[getatt_arn_of(value)], set()).update(a for a in as_list(st.get("Action")) if isinstance(a, str))
    exporters = export_functions(template)
    fns = functions(template)
    for name, fn in sorted(fns.items()):
        objects: set[str] = set()
        listing: set[str] = set()
        for st in service_statements(function_policy_statements(name, fn), "s3"):
            actions = set(exact_actions(name, st, "s3"))
            targets = as_list(st.get("Resource"))
            require(len(targets) == 1, f"{name}: s3 statement {st.get('Sid')!r} must name one resource, found {st.get('Resource')!r}")
            if sub_text(targets[0]) == EXPORT_OBJECTS and isinstance(targets[0], dict):
                require(actions <= OBJECT_ACTIONS, f"{name}: {sorted(actions - OBJECT_ACTIONS)} are not object actions on {EXPORT_OBJECTS}")
                objects |= actions
            elif targets[0] in bucket_arn:
                require(actions <= LIST_EXPORTS, f"{name}: {sorted(actions - LIST_EXPORTS)} on the whole bucket; only {sorted(LIST_EXPORTS)} may name it")
                listing |= actions
            else:
                raise CheckFailed(f"{name}: s3 statement {st.get('Sid')!r} names {targets[0]!r}; only !Sub \"{EXPORT_OBJECTS}\" or !GetAtt {EXPORT_BUCKET}.Arn")
        want_objects, want_listing, _ = EXPORT_ACCESS[exporters[name]] if name in exporters else (set(), set(), set())
        require(
            (objects, listing) == (want_objects, want_listing),
            f"{name}: s3 actions must be exactly {sorted(want_objects)} on exports/* and {sorted(want_listing)} on the bucket; "
            f"found {sorted(objects)} and {sorted(listing)}",
        )
        for action, kms in S3_KMS_USE.items():
            if action in objects:
                lacking = kms - key_grants.get(name, set())
                require(not lacking, f"{name}: may {action} in the export bucket but {PII_KEY}'s policy does not grant its role {sorted(lacking)}")
        env = effective_env(template, fn)
        if name in exporters:
            for variable, target in ((EXPORT_BUCKET_ENV, EXPORT_BUCKET), (EXPORT_EXPIRY_ENV, EXPORT_EXPIRY_PARAM)):
                require(env.get(variable) == {"Ref": target}, f"{name}: {variable} must be !Ref {target}, found {env.get(variable)!r}")
        else:
            require(EXPORT_BUCKET_ENV not in env, f"{name} ({binary_of(fn)}): has {EXPORT_BUCKET_ENV} but EXPORT_ACCESS does not list it")
            named = sorted(references(fn.get("Properties") or {}, {EXPORT_BUCKET, JOBS_QUEUE}))
            require(not named, f"{name} ({binary_of(fn)}): references {named} but EXPORT_ACCESS does not list it")
    # No grant on the bucket or the queue anywhere else (a managed policy, another role).
    counted = sum(len(service_statements(function_policy_statements(n, f), svc)) for n, f in fns.items() for svc in ("s3", "sqs"))
    everywhere = [
        path for path, st in all_statements(template.get("Resources") or {}, "Resources")
        if st.get("Effect") == "Allow" and (service_statements([st], "s3") or service_statements([st], "sqs"))
    ]
    require(len(everywhere) == counted, f"s3 or sqs granted outside the functions' inline policies: {everywhere}")
    return (
        f"{EXPORT_BUCKET}: retained, versioned, SSE-KMS with {PII_KEY} (bucket key), public access blocked, ACLs off, TLS only; "
        f"objects expire after !Ref {EXPORT_EXPIRY_PARAM} ({low}..{high}), noncurrent and unfinished after 1 day; "
        + ", ".join(f"{n} ({b})" for n, b in sorted(exporters.items()))
        + " hold exactly their listed actions on exports/*" + note
    )


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
    ("(l) data URI from Secrets Manager", check_data_uri_secret),
    ("(m) setup on deploy (custom resource)", check_setup_on_deploy),
    ("(n) usage snapshot schedule", check_usage_snapshot_schedule),
    ("(o) CORS preflight mocks", check_cors_preflights),
    ("(p) no CORS credentials, no wildcard origin", check_no_cors_credentials),
    ("(q) gateway responses: envelope and CORS", check_gateway_responses),
    ("(r) stage throttling", check_throttling),
    ("(s) metrics service", check_metrics_env),
    ("(t) alarms and their topic", check_alarms),
    ("(u) operations dashboard", check_dashboard),
    ("(w) each function builds from its own crate", check_code_uris),
    ("(x) personal-data KMS key and the key vault", check_pii_key),
    ("(y) saga sweep schedule", check_sweep_schedule),
    ("(z) invitation e-mail through SES only when configured", check_invitation_email),
    ("(aa) self-service sign-up switch", check_signup_switch),
    ("(ab) sign-up WAF rule, off by default", check_signup_waf),
    ("(ac) erasure receipts' signing key and backup bounds", check_receipt_key),
    ("(ad) tenant jobs: queue, dead letters and worker", check_jobs_queue),
    ("(ae) export bucket and who may use it", check_export_bucket),
    # Last: it needs the EMF lines the cargo tests capture.
    ("(v) alarms watch emitted metrics", check_alarms_watch_emitted_metrics),
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
