//! `local-api`: the local stack's Rust half.
//!   local-api serve                     serve every route on 127.0.0.1:$LOCAL_API_PORT (3000)
//!   local-api migrate setup|up|status   run the migrations handler once; print its report
//!                                       (these and `serve` also read KMS_KEY_ID, and moto's KMS
//!                                       through AWS_ENDPOINT_URL_KMS)
//!   local-api migrate rotate-key|shred TENANT [--resume]
//!                                       rotate or shred one tenant's personal-data keys
//!   local-api migrate reconcile-tombstones
//!                                       after a restore: end again what it brought back of
//!                                       purged tenants (any other action name works too)
//!   local-api onboarding sweep [--older-than SECONDS]
//!                                       finish or undo every saga whose lease expired that long
//!                                       ago (60 s; 0 also takes other owners' live leases), through
//!                                       the serving API if there is one; exit 1 if any stays open
//!   local-api reset                     drop the local database (loopback URIs only)
//!   local-api seed-events               seed the tenant, users and roles that events/ name
//!   local-api seed-export-bench N       add N documents to the events' tenant and queue its
//!                                       export (the jobs worker's memory bench); print its id
//!   local-api job ID                    print a job of the jobs collection
//!   local-api bootstrap                 make (or find) the user pool in moto; print its ids
//!   local-api kms-key [ID]              make (or keep, if moto still has ID) the personal-data
//!                                       master key in moto's KMS; print KMS_KEY_ID=…; and make
//!                                       (or keep) the erasure receipts' signing key; print
//!                                       RECEIPT_KEY_ID=… (which `serve` requires)
//!   local-api user EMAIL PASSWORD [--tenant T] [--superadmin]
//!                                       make (or update) a user; print its ID token
//! `serve` and `migrate` read MONGODB_URI and MONGODB_DATABASE; `serve` also the COGNITO_*
//! settings (see shared::config). The others read MOTO_URL (default http://127.0.0.1:5000),
//! AWS_REGION (default us-east-1) and COGNITO_POOL_NAME (default tenancy-local).
//!
//! While `serve` runs it holds a lease on its database; `migrate` then sends its action to that
//! process instead of writing beside it (FerretDB serialises writes within one process only),
//! with the control token `serve` wrote to `<checkout>/.cache/run/local-api-<port>.token`
//! (local_api::control): the port from the lease, the checkout from this binary's own path, so
//! from any working directory.

use local_api::control::{self, CONTROL_TOKEN_HEADER};
use local_api::{cognito, BoxError, LOCAL_MIGRATIONS_PATH, SERVE_LEASE, SERVE_LEASE_TTL};
use shared::config::{process_env, CognitoConfig, DbConfig};
use shared::db::{Db, SystemContext};
use shared::identity::SUPERADMIN_GROUP;

/// The alias of the local erasure receipts' signing key in moto's KMS.
const RECEIPT_KEY_ALIAS: &str = "alias/tenancy-local-receipts";

/// Takes the serve lease (refusing to start beside another local API on the same database) and
/// renews it in the background; a message on the returned sender releases it.
async fn hold_serve_lease(db: &Db, owner: &str) -> Result<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>), BoxError> {
    let locks = db.locks(&SystemContext::new("local-api"));
    let Some(lease) = locks.try_acquire(SERVE_LEASE, owner, SERVE_LEASE_TTL).await? else {
        let holder = locks.holder(SERVE_LEASE).await?.unwrap_or_default();
        return Err(format!(
            "another local API ({holder}) serves this database; stop it first (a crashed one's lease expires within {} s)",
            SERVE_LEASE_TTL.as_secs()
        )
        .into());
    };
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(SERVE_LEASE_TTL / 3);
        loop {
            tokio::select! {
                _ = &mut stopped => {
                    if let Err(error) = lease.release().await {
                        eprintln!("could not release the serve lease: {error}");
                    }
                    return;
                }
                _ = every.tick() => match lease.renew(SERVE_LEASE_TTL).await {
                    Ok(true) => {}
                    Ok(false) => {
                        eprintln!("the serve lease was lost; migrations from other processes may now run beside this API");
                        return;
                    }
                    Err(error) => eprintln!("could not renew the serve lease: {error}"),
                },
            }
        }
    });
    Ok((stop, task))
}

/// Sends `body` to `path` of the local API that serves `db`, if one does (by its serve lease),
/// with its control token, and returns its answer; `None` if no API serves this database.
/// Only the port comes from the database: the token goes to loopback, never to a host a
/// database document names.
async fn through_serving_api(db: &Db, path: &str, body: &serde_json::Value, what: &str) -> Result<Option<serde_json::Value>, BoxError> {
    let Some(owner) = db.locks(&SystemContext::new("local-api")).holder(SERVE_LEASE).await? else {
        return Ok(None);
    };
    let port = control::lease_port(&owner).ok_or("the serve lease names no address")?;
    let token = control::read_token(&control::checkout()?, port).map_err(|e| {
        format!("a local API holds the serve lease on port {port}, but its control token is unreadable ({e}); is it another checkout's?")
    })?;
    eprintln!("a local API serves this database on port {port}: running {what} through it");
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header(CONTROL_TOKEN_HEADER, token.expose())
        .json(body)
        .send()
        .await?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await?;
    if !status.is_success() {
        return Err(format!("the local API refused {what} ({status}): {answer}").into());
    }
    Ok(Some(answer))
}

/// Ctrl-C or SIGTERM (what the run and test scripts send).
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let moto = env_or("MOTO_URL", "http://127.0.0.1:5000");
    let region = env_or("AWS_REGION", "us-east-1");
    let pool_name = env_or("COGNITO_POOL_NAME", "tenancy-local");
    match args.first().map(String::as_str) {
        Some("serve") => {
            shared::telemetry::init("local-api");
            let db = local_api::database(&DbConfig::load("tenancy-local-api").await?).await?;
            // It hosts the onboarding function, which signs and serves erasure receipts.
            db.signer()?;
            // And the tenants function, whose exports go to moto's S3 through moto's SQS.
            let exports = local_api::exports::local_config(&moto);
            local_api::exports::ensure(&exports, &moto, &region).await?;
            let db = db.with_exports(local_api::exports::on_moto(exports, &moto, &region));
            let cognito_config = CognitoConfig::from_env(&process_env())?;
            let directory = local_api::moto_directory(&moto, &cognito_config.region, &cognito_config.user_pool_id);
            // The deployment's switches, as the functions read them (sign-up off unless set).
            let features = shared::config::Features::from_env(&process_env())?;
            let stack = shared::http::Deps::new(db.clone()).with_directory(directory).with_features(features);
            let gateway = local_api::gateway(stack, cognito_config)?;
            let port: u16 = env_or("LOCAL_API_PORT", "3000").parse()?;
            // Loopback only: this is a developer tool, never a public server.
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            let address = listener.local_addr()?;
            // The token file exists before the lease names this address, so that whoever finds
            // the lease finds the token; it goes (on drop) after the lease, on every way out.
            let token_file = control::TokenFile::write(&control::checkout()?, address.port(), &gateway.control_token)?;
            let (stop_renewing, lease) = hold_serve_lease(&db, &format!("serve@{address}")).await?;
            eprintln!("local API listening on http://{address}");
            // The deployed schedule's sweep, every minute: this process alone writes here.
            let sweeper = local_api::sweep_periodically(gateway.stack.clone());
            // The jobs worker, as SQS runs the deployed one.
            let worker = local_api::exports::work_periodically(gateway.stack.clone());
            let served = local_api::serve_until(listener, gateway, shutdown_signal()).await;
            sweeper.abort();
            worker.abort();
            // Give the lease back, so that a restart or a migration need not wait for it to expire.
            let _ = stop_renewing.send(());
            let _ = lease.await;
            drop(token_file);
            served?;
        }
        Some("migrate") if args.len() >= 2 => {
            let mut event = serde_json::json!({"action": args[1]});
            if let Some(tenant) = args.get(2) {
                event["tenantId"] = tenant.clone().into();
                event["resume"] = args.iter().any(|a| a == "--resume").into();
            }
            migrations::parse_event(&event)?;
            let db = local_api::database(&DbConfig::from_env(&process_env(), "tenancy-local-migrate")?).await?;
            let report = match through_serving_api(&db, LOCAL_MIGRATIONS_PATH, &event, &args[1]).await? {
                Some(body) => body,
                None => {
                    let pool = shared::config::PoolConfig::from_env(&process_env())?;
                    let directory = local_api::moto_directory(&moto, &region, &pool.user_pool_id);
                    serde_json::to_value(migrations::run_event(&db, directory.as_ref(), &event).await?)?
                }
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Some("onboarding") if args.get(1).map(String::as_str) == Some("sweep") => {
            let older_than: u64 = match args.iter().position(|a| a == "--older-than") {
                Some(i) => args
                    .get(i + 1)
                    .ok_or("--older-than takes a number of seconds")?
                    .parse()
                    .map_err(|_| "--older-than takes a number of seconds")?,
                None => local_api::LOCAL_SWEEP_AFTER.as_secs(),
            };
            // The database alone first, without the keyring: a serving API does the work.
            let config = DbConfig::from_env(&process_env(), "tenancy-local-sweep")?;
            let plain = Db::cached(&config).await?;
            let request = serde_json::json!({"olderThanSeconds": older_than});
            let report = match through_serving_api(&plain, local_api::LOCAL_SWEEP_PATH, &request, "the sweep").await? {
                Some(body) => serde_json::from_value::<shared::saga::SweepReport>(body)?,
                None => {
                    let (Ok(_), Ok(pool)) = (std::env::var("KMS_KEY_ID"), shared::config::PoolConfig::from_env(&process_env())) else {
                        eprintln!("no local API serves this database; to sweep without one, set KMS_KEY_ID and COGNITO_USER_POOL_ID");
                        std::process::exit(1);
                    };
                    let directory = local_api::moto_directory(&moto, &region, &pool.user_pool_id);
                    let stack = shared::http::Deps::new(local_api::database(&config).await?).with_directory(directory);
                    local_api::sweep_all(&stack, std::time::Duration::from_secs(older_than)).await?
                }
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.all_ended() {
                eprintln!("{} saga(s) are still open: {}", report.left_running.len(), report.left_running.join(", "));
                std::process::exit(1);
            }
        }
        Some("reset") => {
            let config = DbConfig::from_env(&process_env(), "tenancy-local-reset")?;
            // A developer tool: it never drops a database that is not on this machine.
            let host = config.uri.trim_start_matches("mongodb://").split(['/', '?']).next().unwrap_or("");
            if !host.split(',').all(|h| h.starts_with("127.0.0.1") || h.starts_with("localhost")) {
                return Err("reset only drops a database on 127.0.0.1 or localhost".into());
            }
            let client = mongodb::Client::with_uri_str(&config.uri).await?;
            client.database(&config.database).drop().await?;
            // The local vault is the second database beside it: its keys open nothing any more.
            let vault =
                std::env::var("KEY_VAULT_DATABASE").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| format!("{}_vault", config.database));
            client.database(&vault).drop().await?;
            eprintln!("dropped the local database {} and its key vault {vault}", config.database);
        }
        Some("seed-events") => {
            let db = local_api::database(&DbConfig::from_env(&process_env(), "tenancy-local-seed")?).await?;
            let pool = shared::config::PoolConfig::from_env(&process_env())?;
            let directory = local_api::moto_directory(&moto, &region, &pool.user_pool_id);
            local_api::fixtures::seed_events_tenant(&shared::http::Deps::new(db).with_directory(directory)).await?;
            eprintln!("seeded {}", local_api::fixtures::TENANT);
        }
        Some("seed-export-bench") => {
            let documents: u64 = args.get(1).ok_or("seed-export-bench takes a number of documents")?.parse()?;
            let db = local_api::database(&DbConfig::from_env(&process_env(), "tenancy-local-seed")?).await?;
            let exports = local_api::exports::local_config(&moto);
            local_api::exports::ensure(&exports, &moto, &region).await?;
            let db = db.with_exports(local_api::exports::on_moto(exports, &moto, &region));
            let id = local_api::fixtures::seed_export_bench(&db, documents).await?;
            println!("{id}");
        }
        Some("job") if args.len() == 2 => {
            let db = local_api::database(&DbConfig::from_env(&process_env(), "tenancy-local-seed")?).await?;
            let job = shared::jobs::Jobs::new(&db).get(&args[1]).await?.ok_or("no such job")?;
            println!("{}", serde_json::to_string(&job)?);
        }
        Some("secret") => {
            // The connection string as the functions read it: from (moto's) Secrets Manager.
            let uri = std::env::var("MONGODB_URI").map_err(|_| "MONGODB_URI is not set")?;
            let arn = local_api::runtime::put_secret(&moto, &region, local_api::runtime::URI_SECRET_NAME, &uri).await?;
            println!("MONGODB_URI_SECRET_ARN={arn}");
        }
        Some("invoke") if args.len() >= 2 => {
            let path = std::path::Path::new(&args[1]);
            let bin_dir =
                args.iter().position(|a| a == "--bin-dir").and_then(|i| args.get(i + 1)).map(String::as_str).unwrap_or("target/debug");
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let event: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let config = DbConfig::from_env(&process_env(), "tenancy-local-invoke")?;
            let client = cognito::client(&moto, &region);
            let pool = cognito::bootstrap(&client, &moto, &region, &pool_name).await?;
            let stack = shared::http::Deps::new(local_api::database(&config).await?).with_directory(local_api::moto_directory(
                &moto,
                &region,
                &pool.user_pool_id,
            ));
            let arn = local_api::runtime::put_secret(&moto, &region, local_api::runtime::URI_SECRET_NAME, &config.uri).await?;
            eprintln!("invoking the function of {}", path.display());
            let kms_key_id = std::env::var("KMS_KEY_ID").map_err(|_| "KMS_KEY_ID is not set")?;
            let receipt_key_id = std::env::var("RECEIPT_KEY_ID").map_err(|_| "RECEIPT_KEY_ID is not set")?;
            let aws = local_api::runtime::LocalAws {
                pool: &pool,
                moto_url: &moto,
                secret_arn: &arn,
                kms_key_id: &kms_key_id,
                receipt_key_id: &receipt_key_id,
            };
            let (_, run) = local_api::runtime::invoke_event(std::path::Path::new(bin_dir), &stack, &aws, &file_name, event).await?;
            for line in &run.stdout {
                eprintln!("{line}");
            }
            eprint!("{}", run.stderr);
            match run.outcome {
                Some(Ok(response)) => println!("{}", serde_json::to_string_pretty(&response)?),
                Some(Err(error)) => return Err(format!("the function failed: {error}").into()),
                None => return Err(format!("the function answered nothing (exit: {:?})", run.exit).into()),
            }
        }
        Some("kms-key") => {
            // The personal-data master key in moto's KMS. moto keeps key material in memory
            // only: a recorded id it no longer has is replaced, and said so, because nothing
            // sealed under the old key can be read any more.
            let kms = aws_sdk_kms::Client::new(&cognito::moto_config(&moto, &region));
            let recorded = args.get(1).filter(|id| !id.is_empty());
            let kept = match recorded {
                Some(id) => {
                    kms.describe_key().key_id(id).send().await.ok().and_then(|d| d.key_metadata).filter(|m| m.enabled).map(|m| m.key_id)
                }
                None => None,
            };
            let id = match kept {
                Some(id) => id,
                None => {
                    let created = kms.create_key().description("tenancy-local: personal data (fake, local only)").send().await?;
                    if let Some(old) = recorded {
                        println!("KMS_KEY_REPLACED={old}");
                    }
                    created.key_metadata.ok_or("CreateKey returned no key")?.key_id
                }
            };
            println!("KMS_KEY_ID={id}");
            // The erasure receipts' signing key, found by its alias: a moto that kept the master
            // key kept it too. A lost one only makes the local receipts signed before unverifiable,
            // and a reset database holds none.
            let found = kms.describe_key().key_id(RECEIPT_KEY_ALIAS).send().await.ok().and_then(|d| d.key_metadata);
            let receipt_key = match found {
                Some(key) if key.enabled => key.key_id,
                disabled => {
                    let created = kms
                        .create_key()
                        .description("tenancy-local: erasure receipts (fake, local only)")
                        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
                        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
                        .send()
                        .await?;
                    let id = created.key_metadata.ok_or("CreateKey returned no key")?.key_id;
                    match disabled {
                        Some(_) => kms.update_alias().alias_name(RECEIPT_KEY_ALIAS).target_key_id(&id).send().await.map(|_| ())?,
                        None => kms.create_alias().alias_name(RECEIPT_KEY_ALIAS).target_key_id(&id).send().await.map(|_| ())?,
                    }
                    id
                }
            };
            println!("RECEIPT_KEY_ID={receipt_key}");
        }
        Some("bootstrap") => {
            let client = cognito::client(&moto, &region);
            let pool = cognito::bootstrap(&client, &moto, &region, &pool_name).await?;
            print!("{}", pool.to_env());
        }
        Some("user") if args.len() >= 3 => {
            let client = cognito::client(&moto, &region);
            let pool = cognito::bootstrap(&client, &moto, &region, &pool_name).await?;
            let tenant = args.iter().position(|a| a == "--tenant").and_then(|i| args.get(i + 1));
            let groups: &[&str] = if args.iter().any(|a| a == "--superadmin") { &[SUPERADMIN_GROUP] } else { &[] };
            cognito::ensure_user(&client, &pool, &args[1], &args[2], tenant.map(String::as_str), groups).await?;
            println!("{}", cognito::id_token(&client, &pool, &args[1], &args[2]).await?);
        }
        _ => {
            eprintln!(
                "usage: local-api serve | migrate setup|up|status|reconcile-tombstones|… | onboarding sweep [--older-than SECONDS] | reset | seed-events | seed-export-bench N | job ID | secret | invoke EVENT_FILE [--bin-dir DIR] | bootstrap | kms-key [ID] | user EMAIL PASSWORD [--tenant T] [--superadmin]"
            );
            std::process::exit(2);
        }
    }
    Ok(())
}
