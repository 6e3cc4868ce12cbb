//! The fixtures the files in `events/` name: the tenant they act in, its admin linked to the
//! `sub` their claims carry, a second user, and two custom roles, all with fixed ids. The events
//! test and the benchmark seed them the same way, through the tenant scope like any writer.

use crate::{BoxError, Stack};
use mongodb::bson::{doc, oid::ObjectId, Document};
use shared::audit::{Action, Resource};
use shared::db::{SystemContext, TenantCollection};
use shared::ids::{Email, Permission, TenantId};
use shared::models::{ApiKey, ApiKeyStatus, AuditLog, CognitoLink, Profile, RateLimit, Role, User, UserStatus, SYSTEM_PRINCIPAL};

/// The tenant every tenant-scoped event acts in.
pub const TENANT: &str = "tn_demoevents000000000000000";
/// The onboarding saga that made the events' tenant.
pub const ONBOARDING: &str = "sg_demoEventsOnboarding000000000000000000000";
/// The `sub` of the tenant admin in the events' claims.
pub const ADMIN_SUB: &str = "0f1e2d3c-0000-4000-8000-00000000b002";
/// The second user (a viewer that also holds the `Escalations` role).
pub const MEMBER: &str = "6565650000000000000000b2";
/// An audit entry of the events' tenant.
pub const AUDIT_ENTRY: &str = "6565650000000000000000d5";
/// The tenant admin's API key, and its whole key as the authorizer event presents it. A fake,
/// local-only value: it works against nothing but these fixtures.
pub const API_KEY: &str = "6565650000000000000000e6";
pub const API_KEY_SECRET: &str = "FAKEdemoEventsKeySecretNotForProduction0000";
/// A tenant that was offboarded and purged: only its tombstone, with a signed erasure receipt.
pub const PURGED_TENANT: &str = "tn_demopurged000000000000000";
/// The superadmin whose `sub` the events' claims carry, who offboarded [`PURGED_TENANT`].
pub const SUPERADMIN_SUB: &str = "0f1e2d3c-0000-4000-8000-00000000a001";
/// The custom roles `Support` and `Escalations`.
pub const ROLES: [(&str, &str); 2] = [("6565650000000000000000c3", "Support"), ("6565650000000000000000c4", "Escalations")];

/// Creates the events' tenant alone, its admin invited through `stack.directory`.
async fn create_events_tenant(stack: &Stack) -> Result<TenantId, BoxError> {
    let tenant = TenantId::parse(TENANT)?;
    let new = onboarding::input::Onboarding {
        tenant_name: "Demo Events".into(),
        domain: None,
        plan: shared::plans::Plan::Basic,
        admin_email: Email::parse("admin@demo-events.example")?,
        admin_first_name: "Admin".into(),
        admin_last_name: "User".into(),
        customization: None,
    };
    onboarding::service::onboard_fixed(&stack.db, stack.directory.as_ref(), tenant.clone(), ONBOARDING, &new).await?;
    Ok(tenant)
}

/// Creates the events' tenant (its admin invited through `stack.directory`) and the rest.
pub async fn seed_events_tenant(stack: &Stack) -> Result<(), BoxError> {
    let tenant = create_events_tenant(stack).await?;
    let scope = SystemContext::new("event fixtures").for_tenant(tenant);
    let users = stack.db.scoped::<User>(&scope, TenantCollection::Users);
    // The events carry a fixed sub; the invited admin is linked to it as if it had signed in.
    users.update_one(doc! {}, doc! {"$set": {"cognitoUserId": ADMIN_SUB, "status": UserStatus::Active.as_str()}}, false).await?;
    let admin = users.find_one(doc! {"cognitoUserId": ADMIN_SUB}).await?.ok_or("no admin")?;
    let roles = stack.db.scoped::<Role>(&scope, TenantCollection::Roles);
    for (id, name) in ROLES {
        let role = Role {
            id: ObjectId::parse_str(id)?,
            tenant_id: None,
            name: name.into(),
            description: None,
            permissions: vec![Permission::parse("read:users")?],
            is_system: false,
            created_by: SYSTEM_PRINCIPAL,
            created_at: None,
            updated_at: None,
        };
        roles.insert_one(&role).await?;
    }
    let viewer = roles.find_one(doc! {"name": "viewer"}).await?.ok_or("no viewer role")?;
    let profile = Profile { first_name: "Mem".into(), last_name: "Ber".into(), ..Profile::default() };
    let mut member = users::person::pending_record(
        &stack.db,
        shared::db::TenantScope::scope_tenant(&scope),
        &Email::parse("member@demo-events.example")?,
        &profile,
        &[],
    )
    .await?;
    member.id = ObjectId::parse_str(MEMBER)?;
    member.cognito_user_id = CognitoLink::Linked("0f1e2d3c-0000-4000-8000-0000000000b2".into());
    member.roles = vec![viewer.id.to_hex(), ROLES[1].0.to_owned()];
    member.status = UserStatus::Active;
    users.insert_one(&member).await?;
    stack.db.own_tenant(&scope).adjust_counters(1, 0).await?;
    let key_id = ObjectId::parse_str(API_KEY)?;
    let key = ApiKey {
        id: key_id,
        tenant_id: None,
        key_id: API_KEY.into(),
        name: "Demo events key".into(),
        key_hash: api_keys::secret::hash(API_KEY_SECRET),
        previous_key_hash: None,
        previous_key_valid_until: None,
        permissions: vec![Permission::parse("read:users")?, Permission::parse("read:roles")?],
        rate_limit: RateLimit { requests_per_minute: 60, requests_per_hour: 1_000, requests_per_day: 10_000 },
        expires_at: None,
        last_used_at: None,
        status: ApiKeyStatus::Active,
        place_held: None,
        marker_op: None,
        created_by: admin.id,
        rotated_at: None,
        revoked_at: None,
        created_at: None,
        updated_at: None,
    };
    stack.db.scoped::<ApiKey>(&scope, TenantCollection::ApiKeys).insert_one(&key).await?;
    let plan = shared::plans::Plan::Basic;
    let max_keys = plan.limits().api_keys.ok_or("basic has keys")?.max_keys;
    stack.db.own_tenant(&scope).take_key_place(plan, max_keys).await?;
    let now = stack.db.clock().now();
    let entry = AuditLog {
        id: ObjectId::parse_str(AUDIT_ENTRY)?,
        tenant_id: None,
        user_id: Some("fixtures".into()),
        action: Action::TenantCreated.as_str().into(),
        resource: Resource::Tenant.as_str().into(),
        resource_id: Some(TENANT.into()),
        details: doc! {"plan": "basic"},
        ip: "203.0.113.10".into(),
        user_agent: "fixtures".into(),
        request_id: "fixtures".into(),
        timestamp: now,
        expire_at: shared::audit::expire_at(now, shared::plans::Plan::Basic.limits().audit_retention_days),
        created_at: None,
        updated_at: None,
        actor_erased: None,
    };
    stack.db.scoped::<AuditLog>(&scope, TenantCollection::AuditLogs).insert_one(&entry).await?;
    plant_tombstone(&stack.db, &TenantId::parse(PURGED_TENANT)?).await?;
    Ok(())
}

/// Writes the tombstone a purge leaves for `tenant`, offboarded by [`SUPERADMIN_SUB`] 30 days
/// before now, with an erasure receipt signed by `db`'s signer (which must be configured:
/// `RECEIPT_KEY_ID`). Answers the stored receipt (`{payload, signature, keyId,
/// signingAlgorithm}`).
pub async fn plant_tombstone(db: &shared::db::Db, tenant: &TenantId) -> Result<mongodb::bson::Document, BoxError> {
    use shared::receipt::{Receipt, ReceiptFacts};
    let now = db.clock().now();
    let at = |ms_ago: i64| mongodb::bson::DateTime::from_millis(now.timestamp_millis() - ms_ago);
    let facts = ReceiptFacts {
        tenant_id: tenant.clone(),
        offboarded_at: at(30 * 86_400_000),
        offboarded_by: SUPERADMIN_SUB.into(),
        purged_at: now,
        deleted: [("apiKeys", 1), ("auditLogs", 14), ("roles", 5), ("users", 2), ("usageSnapshots", 30)]
            .into_iter()
            .map(|(collection, n)| (collection.to_owned(), n))
            .collect(),
        cognito_users_deleted: 2,
        keys_shredded_at: at(1_000),
    };
    let receipt = Receipt::new(facts, &db.backup_bounds());
    let signed = shared::receipt::sign(&*db.signer()?, &receipt).await?;
    let tombstone = shared::models::TenantTombstone {
        id: tenant.clone(),
        offboarded_at: at(30 * 86_400_000),
        offboarded_by: SUPERADMIN_SUB.into(),
        purged_at: now,
        receipt: Some(signed.clone()),
    };
    let system = SystemContext::new("event fixtures");
    db.global::<shared::models::TenantTombstone>(&system, shared::db::GlobalCollection::TenantTombstones).insert(&tombstone).await?;
    Ok(signed)
}

/// What an event of `events/` needs in a fresh database before its function runs: the events'
/// tenant, and for the PostConfirmation trigger a pending record of the confirmed e-mail in
/// that tenant (the tenant made without the fixtures' admin link, so the record is the one the
/// trigger links). The migrations function needs nothing: its events bring their own work.
pub async fn prepare_for_event(stack: &Stack, file_name: &str, event: &serde_json::Value) -> Result<(), BoxError> {
    if event.get("triggerSource").is_some() {
        let tenant = create_events_tenant(stack).await?;
        let email = event["request"]["userAttributes"]["email"].as_str().ok_or("the trigger event has no e-mail")?;
        let scope = SystemContext::new("event fixtures").for_tenant(tenant.clone());
        let record = users::person::pending_record(&stack.db, &tenant, &Email::parse(email)?, &Profile::default(), &[]).await?;
        stack.db.scoped::<User>(&scope, TenantCollection::Users).insert_one(&record).await?;
        return Ok(());
    }
    if event.get("action").and_then(serde_json::Value::as_str) == Some("reconcile-counters") {
        return plant_counter_drift(stack).await;
    }
    let function = crate::dispatch::function_for_event(file_name, event)?;
    if function == "MigrationsFunction" {
        return Ok(());
    }
    seed_events_tenant(stack).await?;
    if event.get("resource").and_then(serde_json::Value::as_str) == Some("/tenants/{tenantId}/offboard/cancel") {
        return offboard_events_tenant(stack).await;
    }
    if event.get("resource").and_then(serde_json::Value::as_str) == Some("/tenants/{tenantId}/restore") {
        return plant_restorable_export(stack).await;
    }
    if event.get("resource").and_then(serde_json::Value::as_str) == Some("/tenants/{tenantId}/exports/{exportId}")
        || function == tenants::jobs::FUNCTION.logical_id
    {
        plant_export(stack).await?;
    }
    Ok(())
}

/// The events' export of the events' tenant, queued: what the status route reads and the
/// worker's message names.
pub const EXPORT: &str = "ex_demoeventsexportaaaaaaaaaa";

/// Writes the events' export job, queued (kept if there).
pub async fn plant_export(stack: &Stack) -> Result<(), BoxError> {
    let mut job = shared::jobs::Job::new(
        shared::jobs::JobKind::Export,
        TenantId::parse(TENANT)?,
        "fixtures",
        Document::new(),
        stack.db.clock().now(),
    );
    job.id = EXPORT.to_owned();
    match shared::jobs::Jobs::new(&stack.db).create(&job).await {
        Ok(()) | Err(shared::db::DbError::Duplicate) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The cancellation's event: the events' tenant offboarding, its 30-day grace running.
async fn offboard_events_tenant(stack: &Stack) -> Result<(), BoxError> {
    let now = stack.db.clock().now();
    let state = shared::models::OffboardingState {
        requested_at: now,
        requested_by: "fixtures".into(),
        grace_period_days: 30,
        grace_ends_at: mongodb::bson::DateTime::from_millis(now.timestamp_millis() + 30 * 24 * 3600 * 1000),
        previous_status: shared::models::TenantStatus::Active,
        purge_started_at: None,
        restored_into: None,
    };
    let set = doc! {"$set": {"status": "offboarding", "offboarding": mongodb::bson::to_bson(&state)?}};
    let system = SystemContext::new("event fixtures");
    if stack.db.tenants(&system).update_many(doc! {"tenantId": TENANT}, set).await? != 1 {
        return Err("the events' tenant is missing".into());
    }
    Ok(())
}

/// The reconciliation's event: the events' tenant with its `apiKeyCount` one high, as a lost
/// reply once left it, so that the job corrects it and prints its `CounterCorrections` line.
/// Seeded an hour back: the recount leaves alone a counter whose records are younger than its
/// settle window, since a request may be between its writes (docs/ARCHITECTURE.md §12).
async fn plant_counter_drift(stack: &Stack) -> Result<(), BoxError> {
    let past =
        shared::http::Deps::new(stack.db.clone().with_clock(std::sync::Arc::new(HourBehind))).with_directory(stack.directory.clone());
    seed_events_tenant(&past).await?;
    let system = SystemContext::new("event fixtures");
    let planted = stack.db.tenants(&system).update_many(doc! {"tenantId": TENANT}, doc! {"$inc": {"apiKeyCount": 1_i64}}).await?;
    if planted != 1 {
        return Err("the events' tenant is missing".into());
    }
    Ok(())
}

/// The system clock an hour back, for fixtures that must look settled.
#[derive(Debug)]
struct HourBehind;

impl shared::clock::Clock for HourBehind {
    fn now_ms(&self) -> i64 {
        shared::clock::SystemClock.now_ms() - 3_600_000
    }
}

/// The purged tenant whose export the restore's event names: it has no registry record, and
/// nobody holds its domain or its people's addresses.
pub const RESTORABLE_TENANT: &str = "tn_demorestore00000000000000";
/// Its completed export.
pub const RESTORABLE_EXPORT: &str = "ex_demorestoreexportaaaaaaaaa";

/// Writes a completed export of [`RESTORABLE_TENANT`] (its job, and its files in the export
/// bucket): the tenant record, the admin role, one admin, and empty files for the rest.
pub async fn plant_restorable_export(stack: &Stack) -> Result<(), BoxError> {
    use shared::plans::Plan;
    let tenant = TenantId::parse(RESTORABLE_TENANT)?;
    let email = "owner@restore.example";
    // A plaintext value reads back as a legacy sealed one: the settings as the export opens them.
    let billing_email: shared::pii::Sealed = mongodb::bson::from_bson(mongodb::bson::Bson::String(email.into()))?;
    let settings = mongodb::bson::to_document(&shared::models::TenantSettings::for_plan(Plan::Basic, billing_email))?;
    let role = ObjectId::new();
    let now = mongodb::bson::DateTime::now();
    let files: [(&str, Vec<Document>); 6] = [
        (
            "tenant",
            vec![doc! {"_id": ObjectId::new(), "tenantId": RESTORABLE_TENANT, "name": "Demo Restore", "domain": "restore.example",
            "settings": settings, "status": "active", "createdAt": now}],
        ),
        (
            "users",
            vec![doc! {"_id": ObjectId::new(), "tenantId": RESTORABLE_TENANT, "cognitoUserId": "0f1e2d3c-0000-4000-8000-00000000c003",
            "email": email, "profile": {"firstName": "Demo", "lastName": "Owner"}, "roles": [role.to_hex()], "status": "active", "createdAt": now}],
        ),
        (
            "roles",
            vec![doc! {"_id": role, "tenantId": RESTORABLE_TENANT, "name": "admin", "description": "Full access to all resources",
            "permissions": ["*"], "isSystem": true, "createdBy": SYSTEM_PRINCIPAL, "createdAt": now}],
        ),
        ("apiKeys", vec![]),
        ("auditLogs", vec![]),
        ("userErasures", vec![]),
    ];
    let exports = stack.db.exports()?;
    let mut written = Vec::new();
    for (collection, documents) in files {
        let name = format!("{collection}.ndjson.gz");
        let key = shared::exports::file_key(&tenant, RESTORABLE_EXPORT, &name);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for document in &documents {
            serde_json::to_writer(&mut gz, &mongodb::bson::Bson::Document(document.clone()).into_relaxed_extjson())?;
            std::io::Write::write_all(&mut gz, b"\n")?;
        }
        let upload = exports.begin_file(&key).await?;
        let etag = exports.put_part(&key, &upload, 1, gz.finish()?).await?;
        exports.finish_file(&key, &upload, &[(1, etag)]).await?;
        let (sha256, bytes) = exports.digest(&key).await?;
        written.push(shared::jobs::JobFile { name, count: documents.len() as i64, sha256, bytes });
    }
    let mut job = shared::jobs::Job::new(shared::jobs::JobKind::Export, tenant, "fixtures", Document::new(), now);
    job.id = RESTORABLE_EXPORT.to_owned();
    job.state = shared::jobs::JobState::Completed;
    job.files = written;
    job.completed_at = Some(now);
    job.files_expire_at = Some(mongodb::bson::DateTime::from_millis(now.timestamp_millis() + 86_400_000));
    match shared::jobs::Jobs::new(&stack.db).create(&job).await {
        Ok(()) | Err(shared::db::DbError::Duplicate) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The export the jobs worker's memory bench runs: of the events' tenant, queued.
pub const BENCH_EXPORT: &str = "ex_benchexportaaaaaaaaaaaaaaa";

/// Adds `documents` documents to the events' tenant (one person in a hundred, the rest audit
/// entries, the bulk of a real tenant's documents), then queues [`BENCH_EXPORT`] of it. Its id.
pub async fn seed_export_bench(db: &shared::db::Db, documents: u64) -> Result<String, BoxError> {
    let tenant = TenantId::parse(TENANT)?;
    let scope = SystemContext::new("export bench").for_tenant(tenant.clone());
    let people = documents / 100;
    let profile = Profile { first_name: "Bench".into(), last_name: "Person".into(), ..Profile::default() };
    let users = db.scoped::<User>(&scope, TenantCollection::Users);
    let mut batch = Vec::new();
    for i in 0..people {
        let email = Email::parse(format!("bench{i}@bench.example"))?;
        batch.push(users::person::pending_record(db, &tenant, &email, &profile, &[]).await?);
        if batch.len() == 500 {
            users.insert_many(&batch).await?;
            batch.clear();
        }
    }
    users.insert_many(&batch).await?;
    let entries = db.scoped::<Document>(&scope, TenantCollection::AuditLogs);
    let now = mongodb::bson::DateTime::now();
    let expire = mongodb::bson::DateTime::from_millis(now.timestamp_millis() + 30 * 86_400_000);
    let mut written = people;
    while written < documents {
        let n = (documents - written).min(1_000);
        let page: Vec<Document> = (0..n)
            .map(|i| {
                doc! {"action": "user.updated", "resource": "user", "resourceId": ObjectId::new().to_hex(),
                "details": {"changes": ["status", "roles"], "status": "active", "note": format!("bench entry {}", written + i)},
                "ip": "203.0.113.10", "userAgent": "curl/8.5.0", "requestId": format!("bench-{}", written + i), "userId": ADMIN_SUB,
                "timestamp": now, "expireAt": expire}
            })
            .collect();
        entries.insert_many(&page).await?;
        written += n;
    }
    let mut job = shared::jobs::Job::new(shared::jobs::JobKind::Export, tenant, "bench", Document::new(), now);
    job.id = BENCH_EXPORT.to_owned();
    shared::jobs::Jobs::new(db).create(&job).await?;
    Ok(job.id)
}
