//! Outages and a crash in the middle of the durable sagas (docs/ARCHITECTURE.md §21), over HTTP,
//! against real FerretDB and moto:
//! - moto stopped while an onboarding or an invitation makes its Cognito user: a 503 with
//!   `Retry-After`, and once moto is back a retry with the same key completes, whole;
//! - FerretDB stopped (a fault proxy refusing) in the middle of an onboarding: the same, and a
//!   saga the outage left open, its compensation cut off, is ended by the sweeper;
//! - the served `local-api` killed with SIGKILL during a burst of invitations and onboardings,
//!   restarted and swept with `local-api onboarding sweep --older-than 0`: nothing of an
//!   unregistered tenant remains, every counter equals a recount, and every request retried
//!   either succeeds or meets the very outcome the sweep completed.

use local_api::control;
use local_api::Stack;
use mongodb::bson::Document;
use reqwest::Method;
use serde_json::{json, Value};
use shared::clock::ManualClock;
use shared::config::DbConfig;
use shared::db::{Db, ServerState, SystemContext};
use shared::directory::{CognitoDirectory, Directory, DirectoryError, DirectoryUser, SharedDirectory};
use shared::ids::{Email, TenantId};
use shared::pii::{KeyVault, KeyWrapper, Keyring};
use shared::saga::{SweepOptions, SweepReport, LEASE_TTL};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tenancy_tests::app::{spawn_app, spawn_app_on_db_with, spawn_app_with, TestApp};
use tenancy_tests::invariants::{all, assert_whole_or_nothing};
use tenancy_tests::proxy::FaultProxy;
use tokio::io::AsyncBufReadExt;

const REGION: &str = "us-east-1";
/// What a stopped moto is to the SDK: a loopback port nothing listens on (the discard port).
const STOPPED_MOTO: &str = "http://127.0.0.1:9";

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// One function's user directory in front of moto, which the test stops: while stopped, or for
/// the next few calls, every call goes to a client of a closed loopback port, so that the
/// failure is the SDK's own, classed by the product's own mapping. It can also stop the database
/// (a fault proxy's refusal) at a given call: an exact point in the middle of a saga.
struct Seam {
    moto: SharedDirectory,
    stopped: CognitoDirectory,
    down: AtomicBool,
    /// Calls still to fail before moto answers again: a short outage.
    blip: AtomicUsize,
    calls: AtomicUsize,
    failed: AtomicUsize,
    /// The call, by its number, at which the database stops, and the proxy that stops it.
    stop_db: Mutex<Option<(usize, Arc<FaultProxy>)>>,
}

impl std::fmt::Debug for Seam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seam").field("calls", &self.calls).field("failed", &self.failed).finish_non_exhaustive()
    }
}

impl Seam {
    fn new(moto: SharedDirectory) -> Arc<Self> {
        Arc::new(Self {
            moto,
            stopped: CognitoDirectory::new(local_api::cognito::client(STOPPED_MOTO, REGION), "us-east-1_Stopped0"),
            down: AtomicBool::new(false),
            blip: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            stop_db: Mutex::new(None),
        })
    }

    fn stop(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    fn start(&self) {
        self.down.store(false, Ordering::SeqCst);
        self.blip.store(0, Ordering::SeqCst);
    }

    /// moto answers none of the next `n` calls, then answers again.
    fn fail_next(&self, n: usize) {
        self.blip.store(n, Ordering::SeqCst);
    }

    /// The database stops (`proxy` refuses) as the call `later` calls from now begins.
    fn stop_database_at(&self, later: usize, proxy: Arc<FaultProxy>) {
        *self.stop_db.lock().unwrap() = Some((self.calls.load(Ordering::SeqCst) + later, proxy));
    }

    fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    /// Who answers this call: moto, or the closed port.
    fn route(&self) -> &dyn Directory {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        {
            let mut stop = self.stop_db.lock().unwrap();
            if stop.as_ref().is_some_and(|(at, _)| *at == n) {
                let (_, proxy) = stop.take().expect("checked");
                proxy.set_refusing(true);
            }
        }
        let blip = self.blip.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok();
        if self.down.load(Ordering::SeqCst) || blip {
            self.failed.fetch_add(1, Ordering::SeqCst);
            &self.stopped
        } else {
            self.moto.as_ref()
        }
    }
}

impl Directory for Seam {
    fn create_user<'a>(
        &'a self,
        email: &'a Email,
        tenant: &'a TenantId,
    ) -> futures_util::future::BoxFuture<'a, Result<String, DirectoryError>> {
        self.route().create_user(email, tenant)
    }
    fn get_user<'a>(&'a self, email: &'a Email) -> futures_util::future::BoxFuture<'a, Result<Option<DirectoryUser>, DirectoryError>> {
        self.route().get_user(email)
    }
    fn delete_user<'a>(&'a self, email: &'a Email) -> futures_util::future::BoxFuture<'a, Result<(), DirectoryError>> {
        self.route().delete_user(email)
    }
    fn set_enabled<'a>(&'a self, email: &'a Email, enabled: bool) -> futures_util::future::BoxFuture<'a, Result<(), DirectoryError>> {
        self.route().set_enabled(email, enabled)
    }
}

/// The functions of `stack`, `logical_id`'s with a [`Seam`] in front of moto, and the seam.
fn with_seam(stack: &Stack, logical_id: &'static str, slot: &OnceLock<Arc<Seam>>) -> Vec<Arc<dyn shared::http::HttpFunction>> {
    let seam = Seam::new(stack.directory.clone());
    slot.set(seam.clone()).expect("one seam per app");
    local_api::functions_with_directory(stack, logical_id, seam)
}

fn onboarding_body(n: &str) -> Value {
    json!({"tenantName": format!("Outage {n}"), "domain": format!("outage-{n}.example"),
        "adminEmail": format!("admin@outage-{n}.example"), "adminFirstName": "Ada", "adminLastName": "Lovelace"})
}

/// The sagas of `kind` in the app's database.
async fn sagas_of(app: &TestApp, kind: &str) -> Vec<Document> {
    all(app, false, "sagas").await.into_iter().filter(|s| s.get_str("kind") == Ok(kind)).collect()
}

/// Whether the invitee `email` holds a record linked to its Cognito user.
async fn linked(app: &TestApp, email: &str) -> bool {
    let record = tenancy_tests::user_by_email(&app.db, email).await;
    record.is_some_and(|u| u.get_str("cognitoUserId").is_ok_and(|link| !link.starts_with("pending:")))
}

/// How moto fails at the Cognito step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// Gone for the step's two calls (the creation, then the look-up for a lost reply), back for
    /// the compensation.
    Blip,
    /// Stopped at the step and still stopped when the caller is answered; started again later.
    Stopped,
}

/// An onboarding (`/onboarding`, superadmin) or an invitation (`/users`, a tenant admin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Onboarding,
    Invitation,
}

/// One saga of `kind`, with key `n`, whose Cognito step meets `outage`: a 503 with Retry-After,
/// nothing made that survives, and, moto back, a retry with the same key that completes whole.
async fn moto_outage(app: &TestApp, moto: &Seam, kind: Kind, token: &str, n: &str, outage: Outage) {
    let context = format!("{kind:?}, moto {outage:?}");
    let invitee = format!("invitee-{n}@outage.example");
    let (path, body, stored_kind) = match kind {
        Kind::Onboarding => ("/onboarding", onboarding_body(n), "onboarding"),
        Kind::Invitation => ("/users", json!({"email": &invitee, "firstName": "In", "lastName": "Vitee"}), "invitation"),
    };
    let key = format!("outage-key-{n}");
    let post = || app.request(Method::POST, path, Some(token)).header("Idempotency-Key", &key).json(&body);
    let before: Vec<Document> = sagas_of(app, stored_kind).await;
    let is_new = |s: &Document| !before.iter().any(|b| b.get_str("_id") == s.get_str("_id"));
    let failed_before = moto.failed();
    match outage {
        Outage::Blip => moto.fail_next(2),
        Outage::Stopped => moto.stop(),
    }
    let (status, headers, reply) = app.call(post()).await;
    assert_eq!(status, 503, "{context}: {reply}");
    assert!(retry_after(&headers).is_some_and(|s| s > 0), "{context}: a 503 says when to retry: {headers:?}");
    assert!(moto.failed() > failed_before, "{context}: the saga met the outage");
    let made: Vec<Document> = sagas_of(app, stored_kind).await.into_iter().filter(is_new).collect();
    assert_eq!(made.len(), 1, "{context}: one saga for the key");
    let saga = &made[0];
    let state = saga.get_str("state").unwrap();
    match (outage, state) {
        // The compensation reached moto: undone at once, and a replay may start it over.
        (Outage::Blip, "failed") => {
            let error = saga.get_document("error").unwrap();
            assert_eq!(error.get_bool("retryable"), Ok(true), "{context}: {error}");
            assert_eq!(error.get_str("code"), Ok("unavailable"), "{context}: {error}");
            assert!(saga.get("leaseOwner").is_none_or(|o| o.as_null().is_some()), "{context}: the lease is given up");
            assert_whole_or_nothing(app, &format!("{context}, right after the 503")).await;
        }
        // moto still down: whether a Cognito user exists is unknown, so the saga waits for the
        // next taker, its lease given up so that a retry need not wait for it.
        (Outage::Stopped, "failed") => {
            assert_eq!(saga.get_document("error").unwrap().get_bool("retryable"), Ok(true), "{context}: {saga}");
        }
        (Outage::Stopped, "running") => {
            assert_eq!(saga.get_bool("compensating"), Ok(true), "{context}: left to be undone");
            assert!(saga.get("leaseOwner").is_none_or(|o| o.as_null().is_some()), "{context}: the lease is given up");
        }
        (_, other) => panic!("{context}: the saga is {other} after the 503: {saga}"),
    }
    moto.start();
    let (status, _, first) = app.call(post()).await;
    assert_eq!(status, 201, "{context}: the retry with the same key, moto back, completes: {first}");
    let (status, _, replay) = app.call(post()).await;
    assert_eq!(status, 200, "{context}: a replay answers the first outcome: {replay}");
    let id = if kind == Kind::Onboarding { "tenantId" } else { "id" };
    assert_eq!(replay["data"][id], first["data"][id], "{context}");
    assert_whole_or_nothing(app, &context).await;
    let made: Vec<Document> = sagas_of(app, stored_kind).await.into_iter().filter(is_new).collect();
    assert_eq!(made.len(), 1, "{context}: still one saga for the key");
    assert_eq!(made[0].get_str("state"), Ok("completed"), "{context}");
    match kind {
        Kind::Onboarding => {
            let names: Vec<String> = all(app, false, "tenants").await.iter().map(|t| t.get_str("name").unwrap().to_owned()).collect();
            assert_eq!(names.iter().filter(|t| **t == format!("Outage {n}")).count(), 1, "{context}: {names:?}");
        }
        Kind::Invitation => assert!(linked(app, &invitee).await, "{context}: the invitee is linked"),
    }
}

#[tokio::test]
async fn moto_stopped_mid_onboarding_answers_503_and_a_retry_with_the_key_completes() {
    let slot = Arc::new(OnceLock::new());
    let app = spawn_app_with({
        let slot = slot.clone();
        move |stack: &Stack| with_seam(stack, onboarding::LOGICAL_ID, &slot)
    })
    .await;
    let moto = slot.get().expect("the seam").clone();
    let token = app.superadmin().await;
    moto_outage(&app, &moto, Kind::Onboarding, &token, "blip", Outage::Blip).await;
    moto_outage(&app, &moto, Kind::Onboarding, &token, "stopped", Outage::Stopped).await;
}

#[tokio::test]
async fn moto_stopped_mid_invitation_answers_503_and_a_retry_with_the_key_completes() {
    let slot = Arc::new(OnceLock::new());
    let app = spawn_app_with({
        let slot = slot.clone();
        move |stack: &Stack| with_seam(stack, users::LOGICAL_ID, &slot)
    })
    .await;
    let moto = slot.get().expect("the seam").clone();
    let (admin, _) = app.tenant_with_admin("enterprise", "admin@moto-outage.example").await;
    moto_outage(&app, &moto, Kind::Invitation, &admin, "blip", Outage::Blip).await;
    moto_outage(&app, &moto, Kind::Invitation, &admin, "stopped", Outage::Stopped).await;
}

/// An app whose database and vault are both reached through a fault proxy (one FerretDB: an
/// outage takes both), on a manual clock, with a seam in front of the onboarding function's
/// directory.
struct Proxied {
    app: TestApp,
    proxy: Arc<FaultProxy>,
    clock: Arc<ManualClock>,
    seam: Arc<Seam>,
    /// The vault as the keyring reaches it: its own client, as a vault on a cluster of its own has.
    vault: mongodb::Database,
}

impl Proxied {
    async fn start() -> Proxied {
        tenancy_tests::capture_logs();
        let proxy = Arc::new(FaultProxy::start(&tenancy_tests::mongodb_uri()).await);
        let clock = ManualClock::starting_now();
        // The deployed selection timeout: a call that reaches the driver during the outage fails
        // as a deployed one would.
        let config = DbConfig { uri: proxy.uri(), server_selection_timeout: Duration::from_secs(3), ..tenancy_tests::fresh_db_config() };
        let db = Db::connect(&config).await.expect("connect through the proxy").with_clock(clock.clone());
        let mut options = mongodb::options::ClientOptions::parse(proxy.uri()).await.unwrap();
        options.server_selection_timeout = Some(Duration::from_secs(3));
        let vault = mongodb::Client::with_options(options).unwrap().database(&tenancy_tests::vault_name(&db));
        let kms: Arc<dyn KeyWrapper> = tenancy_tests::moto_kms().await;
        let db = db.with_keyring(Arc::new(Keyring::new(kms, KeyVault::new(vault.clone()), clock.clone())));
        migrations::setup(&db).await.expect("setup");
        let slot = Arc::new(OnceLock::new());
        let app = spawn_app_on_db_with(db, {
            let slot = slot.clone();
            move |stack: &Stack| with_seam(stack, onboarding::LOGICAL_ID, &slot)
        })
        .await;
        let seam = slot.get().expect("the seam").clone();
        Proxied { app, proxy, clock, seam, vault }
    }

    /// The database back: the proxy forwards again, the data client's monitoring has seen it,
    /// and the vault's client has dropped the connections the outage cut (the first command on
    /// each fails, as after any restart of the server).
    async fn database_back(&self) {
        self.proxy.set_refusing(false);
        let _ = self.app.db.ping().await;
        tokio::time::timeout(Duration::from_secs(30), self.app.db.until_server_state(ServerState::Available))
            .await
            .expect("the driver's monitoring reports the recovery");
        let mut answered = false;
        for _ in 0..5 {
            if self.vault.run_command(mongodb::bson::doc! {"ping": 1}).await.is_ok() {
                answered = true;
                break;
            }
        }
        assert!(answered, "the vault answers again");
    }
}

/// `POST /onboarding` with the key `outage-key-<n>`.
async fn onboard(app: &TestApp, token: &str, n: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    app.call(
        app.request(Method::POST, "/onboarding", Some(token))
            .header("Idempotency-Key", format!("outage-key-{n}"))
            .json(&onboarding_body(n)),
    )
    .await
}

/// The database stops as Cognito makes the admin's user: the keys, claims, roles and record are
/// written, the link and the registry are not. A 503 with Retry-After; once it is back, a retry
/// with the same key meets the dead call's live lease (a 409 with Retry-After) until it lapses,
/// then resumes and completes, whole.
#[tokio::test]
async fn ferretdb_stopped_mid_onboarding_answers_503_and_a_retry_with_the_key_completes() {
    let proxied = Proxied::start().await;
    let (app, proxy, clock, seam) = (&proxied.app, &proxied.proxy, &proxied.clock, &proxied.seam);
    let token = app.superadmin().await;
    seam.stop_database_at(0, proxy.clone());
    let (status, headers, reply) = onboard(app, &token, "db").await;
    assert_eq!(status, 503, "{reply}");
    assert!(retry_after(&headers).is_some_and(|s| s > 0), "{headers:?}");
    assert!(proxy.refused() > 0, "the database was down for the rest of the call");
    proxied.database_back().await;
    let sagas = sagas_of(app, "onboarding").await;
    assert_eq!(sagas.len(), 1);
    assert_ne!(sagas[0].get_str("state"), Ok("completed"), "{}", sagas[0]);
    assert!(all(app, false, "tenants").await.is_empty(), "nothing registered during the outage");

    let mut answered = None;
    for _ in 0..3 {
        let (status, headers, reply) = onboard(app, &token, "db").await;
        match status {
            409 => {
                assert!(retry_after(&headers).is_some_and(|s| s > 0 && s <= LEASE_TTL.as_secs()), "in progress says when: {headers:?}");
                clock.advance(LEASE_TTL + Duration::from_secs(1));
            }
            201 => {
                answered = Some(reply);
                break;
            }
            other => panic!("the retry answered {other}: {reply}"),
        }
    }
    let first = answered.expect("a retry with the same key completes once the lease lapses");
    let (status, _, replay) = onboard(app, &token, "db").await;
    assert_eq!((status, &replay["data"]["tenantId"]), (200, &first["data"]["tenantId"]), "{replay}");
    assert_whole_or_nothing(app, "database outage, then a retry").await;
    assert_eq!(all(app, false, "tenants").await.len(), 1);
    assert_eq!(sagas_of(app, "onboarding").await[0].get_str("state"), Ok("completed"));
}

/// Sweeps as `local-api onboarding sweep --older-than 0` does, after the clock moved past every
/// lease this process's dead calls left; the report.
async fn sweep_now(app: &TestApp, clock: &ManualClock) -> SweepReport {
    clock.advance(LEASE_TTL + Duration::from_secs(1));
    let options = SweepOptions { older_than: Duration::ZERO, any_other_owner: true, limit: 100 };
    onboarding::service::sweep(&app.db, app.deps.directory.as_ref(), options).await.expect("the sweep runs")
}

/// Two onboardings that an outage of the database leaves open, each ended by the sweeper:
/// - the database stops as Cognito makes the admin's user (nothing can be recorded or undone);
/// - Cognito fails the step, and the database stops as the compensation begins: the saga is
///   left `running`, to be compensated.
///
/// Each ends completed or cleanly failed, and what exists is whole or nothing.
#[tokio::test]
async fn an_onboarding_a_database_outage_left_open_is_ended_by_the_sweeper() {
    let proxied = Proxied::start().await;
    let (app, proxy, clock, seam) = (&proxied.app, &proxied.proxy, &proxied.clock, &proxied.seam);
    let token = app.superadmin().await;

    seam.stop_database_at(0, proxy.clone());
    let (status, headers, reply) = onboard(app, &token, "swept").await;
    assert_eq!(status, 503, "{reply}");
    assert!(retry_after(&headers).is_some_and(|s| s > 0), "{headers:?}");
    proxied.database_back().await;
    let report = sweep_now(app, clock).await;
    assert!(report.all_ended() && report.taken == 1, "{report:?}");
    let saga = sagas_of(app, "onboarding").await.pop().unwrap();
    assert!(matches!(saga.get_str("state"), Ok("completed" | "failed")), "{saga}");
    assert_whole_or_nothing(app, "database down at the Cognito step, then a sweep").await;
    if saga.get_str("state") == Ok("completed") {
        let (status, _, replay) = onboard(app, &token, "swept").await;
        assert_eq!(status, 200, "the swept onboarding's outcome is replayed: {replay}");
    }

    // Cognito fails the step (its creation and the look-up after it); the database stops as
    // the compensation asks Cognito whether a user was made.
    seam.fail_next(2);
    seam.stop_database_at(2, proxy.clone());
    let (status, headers, reply) = onboard(app, &token, "cut").await;
    assert_eq!(status, 503, "{reply}");
    assert!(retry_after(&headers).is_some_and(|s| s > 0), "{headers:?}");
    proxied.database_back().await;
    let cut = |s: &Document| s.get_document("params").ok().and_then(|p| p.get_str("tenantName").ok()) == Some("Outage cut");
    let saga = sagas_of(app, "onboarding").await.into_iter().find(cut).expect("the saga");
    assert_eq!(saga.get_str("state"), Ok("running"), "the compensation could not finish: {saga}");
    assert_eq!(saga.get_bool("compensating"), Ok(true), "{saga}");
    let report = sweep_now(app, clock).await;
    assert!(report.all_ended() && report.taken == 1, "{report:?}");
    let saga = sagas_of(app, "onboarding").await.into_iter().find(cut).expect("the saga");
    assert!(matches!(saga.get_str("state"), Ok("completed" | "failed")), "{saga}");
    assert_whole_or_nothing(app, "compensation cut off by the database, then a sweep").await;
    assert!(!all(app, false, "tenants").await.iter().any(|t| t.get_str("name") == Ok("Outage cut")), "an undone onboarding");
}

/// The environment of a `local-api` process on `app`'s database and user pool.
async fn local_env(app: &TestApp) -> Vec<(&'static str, String)> {
    tenancy_tests::local_api_env(&app.db, &app.pool).await
}

/// A `local-api serve` process. Dropping it kills it (SIGKILL) and removes its control token
/// file, so that neither outlives a failing test.
struct Served {
    child: tokio::process::Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    async fn start(env: &[(&'static str, String)]) -> Served {
        let mut child = tenancy_tests::local_api_serve(env, &std::env::temp_dir());
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("piped")).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let port = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(address) = line.strip_prefix("local API listening on http://") {
                    return address.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                }
                log.lock().unwrap().push(line);
            }
            None
        })
        .await
        .expect("serve starts");
        let Some(port) = port else { panic!("serve exited before listening: {:?}", log.lock().unwrap()) };
        // Drained for as long as it runs: a full pipe would stall the server's logging.
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        Served { child, port, log }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn token_file(&self) -> PathBuf {
        control::token_path(&control::checkout().expect("the checkout"), self.port)
    }

    fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter().rev().take(40).rev().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGKILL, as a crash: nothing of the process's own cleanup runs.
    async fn kill9(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("the killed process is reaped");
        // The dead process could not remove its own token file.
        let _ = std::fs::remove_file(self.token_file());
    }

    /// SIGTERM, as the run and test scripts stop it; its exit status.
    async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.expect("serve stops on SIGTERM").unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(self.token_file());
    }
}

/// One request of the burst.
#[derive(Debug, Clone)]
struct Call {
    label: String,
    path: &'static str,
    token: String,
    key: Option<String>,
    body: Value,
    /// The invitee, for an invitation.
    invitee: Option<String>,
}

impl Call {
    fn request(&self, http: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
        let builder = http.post(format!("{base}{}", self.path)).bearer_auth(&self.token).json(&self.body);
        match &self.key {
            Some(key) => builder.header("Idempotency-Key", key),
            None => builder,
        }
    }
}

/// Sends a request: its status and body, or why no answer came.
async fn answer(request: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// How many answers the burst waits for before the kill: the rest are in flight.
const KILL_AFTER: usize = 3;

/// The served local API killed (SIGKILL) in the middle of 12 invitations (half with a key) and 12
/// onboardings, then restarted and swept with `local-api onboarding sweep --older-than 0`. No
/// claim, key set, role, record or Cognito user of an unregistered tenant is left, and every
/// counter equals a recount; then every request is sent again: each succeeds (a keyed one that
/// completed replays 200), or, without a key, answers 409 because the sweep completed that very
/// invitation (the invitee is linked).
#[tokio::test]
async fn the_local_api_killed_mid_burst_then_swept_leaves_every_tenant_whole_and_every_retry_ends_well() {
    // The app supplies the fresh database, the fresh pool and the views of both; the served
    // binary alone writes to them.
    let app = spawn_app().await;
    let env = local_env(&app).await;
    let mut killed = Served::start(&env).await;
    let http = reqwest::Client::new();
    let superadmin = app.superadmin().await;
    let seed = json!({"name": "Burst Co", "adminEmail": "owner@burst-co.example", "plan": "enterprise"});
    let (status, reply) = answer(http.post(format!("{}/tenants", killed.base())).bearer_auth(&superadmin).json(&seed)).await.unwrap();
    assert_eq!(status, 201, "{reply}");
    let tenant = reply["data"]["tenantId"].as_str().unwrap().to_owned();
    let admin = app.member("owner@burst-co.example", &tenant).await;

    let mut calls = Vec::new();
    for i in 0..12 {
        let invitee = format!("invitee-{i}@burst.example");
        calls.push(Call {
            label: format!("invitation {i}"),
            path: "/users",
            token: admin.clone(),
            key: (i % 2 == 0).then(|| format!("burst-invitation-{i:04}")),
            body: json!({"email": &invitee, "firstName": "In", "lastName": "Vitee"}),
            invitee: Some(invitee),
        });
        calls.push(Call {
            label: format!("onboarding {i}"),
            path: "/onboarding",
            token: superadmin.clone(),
            key: Some(format!("burst-onboarding-{i:04}")),
            body: json!({"tenantName": format!("Burst {i}"), "domain": format!("burst-{i}.example"),
                "adminEmail": format!("admin@burst-{i}.example"), "adminFirstName": "Kim", "adminLastName": "Burst"}),
            invitee: None,
        });
    }

    // The burst; the kill once a few have been answered, while the others are in flight.
    let (answered_tx, mut answered_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let tasks: Vec<_> = calls
        .iter()
        .map(|call| {
            let (request, answered) = (call.request(&http, &killed.base()), answered_tx.clone());
            tokio::spawn(async move {
                let outcome = answer(request).await;
                if outcome.is_ok() {
                    let _ = answered.send(());
                }
                outcome
            })
        })
        .collect();
    drop(answered_tx);
    let mut seen = 0;
    while seen < KILL_AFTER {
        match tokio::time::timeout(Duration::from_secs(120), answered_rx.recv()).await.expect("the burst is answered") {
            Some(()) => seen += 1,
            None => break,
        }
    }
    killed.kill9().await;
    drop(killed);
    let first: Vec<Result<(u16, Value), String>> =
        futures_util::future::join_all(tasks).await.into_iter().map(|t| t.expect("the request task")).collect();
    let cut = first.iter().filter(|o| o.is_err()).count();
    assert!(seen >= KILL_AFTER, "fewer than {KILL_AFTER} answers before the kill");
    assert!(cut >= 1, "the kill came after every request was answered: {first:?}");
    for (call, outcome) in calls.iter().zip(&first) {
        if let Ok((status, reply)) = outcome {
            assert!(*status < 500, "{} answered {status} before the kill: {reply}", call.label);
        }
    }
    println!("burst: {} answered before the kill, {cut} cut", first.len() - cut);

    // The restart: the dead process's serve lease lapses on its own (it renews every 10 s). A
    // bounded poll of that condition, not a sleep for synchronisation: the lease expires on the
    // system clock of a process that is gone, so there is no event to wait on instead.
    let locks = app.db.locks(&SystemContext::new("saga outages test"));
    let deadline = std::time::Instant::now() + local_api::SERVE_LEASE_TTL + Duration::from_secs(15);
    while locks.holder(local_api::SERVE_LEASE).await.expect("the lease's holder").is_some() {
        assert!(std::time::Instant::now() < deadline, "the killed process's serve lease never lapsed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let served = Served::start(&env).await;
    let open_before = all(&app, false, "sagas").await.iter().filter(|s| s.get_str("state") == Ok("running")).count();
    assert!(open_before >= 1, "the kill left no saga open: nothing for the sweep to do");

    let sweep = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(tenancy_tests::local_api_bin())
            .args(["onboarding", "sweep", "--older-than", "0"])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(std::env::temp_dir())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the sweep ends")
    .expect("the sweep runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&sweep.stdout), String::from_utf8_lossy(&sweep.stderr));
    assert!(sweep.status.success(), "the sweep: {:?}\n{stdout}\n{stderr}\nserver:\n{}", sweep.status, served.log_tail());
    assert!(stderr.contains("running the sweep through it"), "it went through the serving API: {stderr}");
    let report: SweepReport = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(report.all_ended() && report.taken >= 1 && report.taken as usize <= open_before, "{open_before} open: {report:?}");
    println!("sweep after the kill: {open_before} open, {report:?}");
    let sagas = all(&app, false, "sagas").await;
    let open: Vec<&Document> = sagas.iter().filter(|s| !matches!(s.get_str("state"), Ok("completed" | "failed"))).collect();
    assert!(open.is_empty(), "sagas still open after the sweep: {open:?}");
    assert_whole_or_nothing(&app, "after the kill and the sweep").await;

    // Every request again, as its client would retry it.
    let mut linked_before = Vec::new();
    for call in &calls {
        linked_before.push(match &call.invitee {
            Some(invitee) => linked(&app, invitee).await,
            None => false,
        });
    }
    let retries = calls.iter().map(|call| answer(call.request(&http, &served.base())));
    let retried = tokio::time::timeout(Duration::from_secs(180), futures_util::future::join_all(retries)).await.expect("the retries end");
    let mut wrong = Vec::new();
    for (((call, before), retry), was_linked) in calls.iter().zip(&first).zip(&retried).zip(&linked_before) {
        let Ok((status, reply)) = retry else {
            wrong.push(format!("{}: no answer: {retry:?}", call.label));
            continue;
        };
        let answered_first = matches!(before, Ok((201, _)));
        let fine = match (&call.key, *status) {
            // With a key: the saga's result again (200), or, if it never completed, now (201).
            (Some(_), 200) => true,
            (Some(_), 201) => !answered_first,
            // Without a key, an invitation the sweep (or the first call) completed meets its
            // own invitee, linked; one it undid is made now.
            (None, 409) => *was_linked,
            (None, 201) => !*was_linked,
            _ => false,
        };
        if !fine {
            wrong.push(format!("{} (key: {}, first: {before:?}, linked: {was_linked}): {status} {reply}", call.label, call.key.is_some()));
        }
        if let (Ok((201, original)), true) = (before, call.path == "/onboarding") {
            if reply["data"]["tenantId"] != original["data"]["tenantId"] {
                wrong.push(format!("{}: the replay names another tenant: {reply}", call.label));
            }
        }
    }
    let names: Vec<String> = all(&app, false, "tenants").await.iter().map(|t| t.get_str("name").unwrap().to_owned()).collect();
    for i in 0..12 {
        if !names.contains(&format!("Burst {i}")) {
            wrong.push(format!("onboarding {i}: no tenant after its retry"));
        }
        if !linked(&app, &format!("invitee-{i}@burst.example")).await {
            wrong.push(format!("invitation {i}: the invitee is not linked after its retry"));
        }
    }
    if !wrong.is_empty() {
        eprintln!("retries after the kill and the sweep:\n{}", wrong.join("\n"));
    }
    assert_whole_or_nothing(&app, "after the retries").await;
    assert!(wrong.is_empty(), "retries after the kill and the sweep:\n{}", wrong.join("\n"));
    let status = served.terminate().await;
    assert!(status.success(), "{status:?}");
}
