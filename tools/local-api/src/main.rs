//! `local-api`: the local stack's Rust half.
//!   local-api serve                     serve every route on 127.0.0.1:$LOCAL_API_PORT (3000)
//!   local-api migrate setup|up|status   run the migrations handler once; print its report
//!   local-api bootstrap                 make (or find) the user pool in moto; print its ids
//!   local-api user EMAIL PASSWORD [--tenant T] [--superadmin]
//!                                       make (or update) a user; print its ID token
//! `serve` and `migrate` read MONGODB_URI and MONGODB_DATABASE; `serve` also the COGNITO_*
//! settings (see shared::config). The others read MOTO_URL (default http://127.0.0.1:5000),
//! AWS_REGION (default us-east-1) and COGNITO_POOL_NAME (default tenancy-local).

use local_api::cognito;
use shared::config::{process_env, CognitoConfig, DbConfig};
use shared::identity::SUPERADMIN_GROUP;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), cognito::BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let moto = env_or("MOTO_URL", "http://127.0.0.1:5000");
    let region = env_or("AWS_REGION", "us-east-1");
    let pool_name = env_or("COGNITO_POOL_NAME", "tenancy-local");
    match args.first().map(String::as_str) {
        Some("serve") => {
            shared::telemetry::init();
            let db = local_api::database(&DbConfig::from_env(&process_env(), "tenancy-local-api")?).await?;
            let gateway = local_api::gateway(db, CognitoConfig::from_env(&process_env())?)?;
            let port: u16 = env_or("LOCAL_API_PORT", "3000").parse()?;
            // Loopback only: this is a developer tool, never a public server.
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            eprintln!("local API listening on http://{}", listener.local_addr()?);
            local_api::serve(listener, gateway).await?;
        }
        Some("migrate") if args.len() == 2 => {
            let action = migrations::parse_event(&serde_json::json!({"action": args[1]}))?;
            let db = local_api::database(&DbConfig::from_env(&process_env(), "tenancy-local-migrate")?).await?;
            let report = migrations::run(&db, action).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
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
                "usage: local-api serve | migrate setup|up|status | bootstrap | user EMAIL PASSWORD [--tenant T] [--superadmin]"
            );
            std::process::exit(2);
        }
    }
    Ok(())
}
