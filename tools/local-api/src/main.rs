//! `local-api`: the local stack's Rust half.
//!   local-api bootstrap                 make (or find) the user pool in moto; print its ids
//!   local-api user EMAIL PASSWORD [--tenant T] [--superadmin]
//!                                       make (or update) a user; print its ID token
//! Settings come from the environment: MOTO_URL (default http://127.0.0.1:5000),
//! AWS_REGION (default us-east-1), COGNITO_POOL_NAME (default tenancy-local).

use local_api::cognito;
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
    let client = cognito::client(&moto, &region);
    match args.first().map(String::as_str) {
        Some("bootstrap") => {
            let pool = cognito::bootstrap(&client, &moto, &region, &pool_name).await?;
            print!("{}", pool.to_env());
        }
        Some("user") if args.len() >= 3 => {
            let pool = cognito::bootstrap(&client, &moto, &region, &pool_name).await?;
            let tenant = args.iter().position(|a| a == "--tenant").and_then(|i| args.get(i + 1));
            let groups: &[&str] = if args.iter().any(|a| a == "--superadmin") { &[SUPERADMIN_GROUP] } else { &[] };
            cognito::ensure_user(&client, &pool, &args[1], &args[2], tenant.map(String::as_str), groups).await?;
            println!("{}", cognito::id_token(&client, &pool, &args[1], &args[2]).await?);
        }
        _ => {
            eprintln!("usage: local-api bootstrap | user EMAIL PASSWORD [--tenant T] [--superadmin]");
            std::process::exit(2);
        }
    }
    Ok(())
}
