//! `pii-scan`: the test command's last word on personal data (docs/ARCHITECTURE.md §20), run
//! after the Rust suites on what they left behind.
//!
//!   pii-scan MONGODB_URI LOG_DIR
//!
//! 1. A raw read of every document of every collection of every database on the server (the
//!    tests' data and vault databases alike) finds no string shaped like an e-mail address,
//!    and every user record's e-mail and names, and every tenant's billing e-mail, stored as a
//!    sealed binary, never as text.
//! 2. Every log line the suites captured (`LOG_DIR/*.jsonl`: the test process at `trace`, the
//!    built binaries at `info`) holds no string shaped like an e-mail address.
//!
//! Each scan also checks that it saw its input (sealed user records, log lines naming user
//! ids), so that an empty scan fails instead of passing.

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document};
use std::collections::HashSet;
use std::process::ExitCode;

/// Whether `text` holds something shaped like an e-mail address: `local@domain.tld`.
fn has_email(text: &str) -> bool {
    let bytes = text.as_bytes();
    let part = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    bytes.iter().enumerate().filter(|(_, b)| **b == b'@').any(|(at, _)| {
        let local = bytes[..at].iter().rev().take_while(|b| part(**b)).count();
        let domain: Vec<u8> =
            bytes[at + 1..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'.' || **b == b'-').copied().collect();
        let domain = String::from_utf8_lossy(&domain);
        let domain = domain.trim_end_matches('.');
        local > 0
            && domain.split('.').count() >= 2
            && domain.split('.').all(|l| !l.is_empty())
            && domain.rsplit('.').next().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
    })
}

/// Every string in `value`, with its path.
fn strings<'a>(path: String, value: &'a Bson, out: &mut Vec<(String, &'a str)>) {
    match value {
        Bson::String(s) => out.push((path, s)),
        Bson::Document(d) => {
            for (k, v) in d {
                strings(format!("{path}.{k}"), v, out);
            }
        }
        Bson::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                strings(format!("{path}[{i}]"), v, out);
            }
        }
        _ => {}
    }
}

fn sealed_at(doc: &Document, path: &str) -> Option<bool> {
    let mut value = Some(&Bson::Document(doc.clone())).cloned();
    for part in path.split('.') {
        value = match value {
            Some(Bson::Document(d)) => d.get(part).cloned(),
            _ => None,
        };
    }
    value.map(|v| matches!(v, Bson::Binary(_)))
}

#[derive(Default)]
struct Findings {
    problems: Vec<String>,
    documents: u64,
    sealed_users: u64,
    sealed_tenants: u64,
    user_ids: HashSet<String>,
}

async fn scan_databases(uri: &str, findings: &mut Findings) -> Result<(), mongodb::error::Error> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    for name in client.list_database_names().await? {
        if ["admin", "local", "config"].contains(&name.as_str()) {
            continue;
        }
        let database = client.database(&name);
        for collection in database.list_collection_names().await? {
            let docs: Vec<Document> =
                database.collection::<Document>(&collection).find(mongodb::bson::doc! {}).await?.try_collect().await?;
            for doc in docs {
                findings.documents += 1;
                let id = doc.get("_id").map(|v| v.to_string()).unwrap_or_default();
                let whole = Bson::Document(doc.clone());
                let mut found = Vec::new();
                strings(String::new(), &whole, &mut found);
                for (path, text) in found {
                    if has_email(text) {
                        findings.problems.push(format!("{name}.{collection} {id}{path}: an e-mail address in the clear"));
                    }
                }
                if collection == "users" && doc.contains_key("tenantId") && doc.contains_key("email") {
                    findings.user_ids.insert(doc.get_object_id("_id").map(|o| o.to_hex()).unwrap_or_default());
                    for field in ["email", "profile.firstName", "profile.lastName", "profile.department", "profile.title"] {
                        if sealed_at(&doc, field) == Some(false) {
                            findings.problems.push(format!("{name}.users {id} {field}: stored unsealed"));
                        }
                    }
                    if sealed_at(&doc, "email") == Some(true) {
                        findings.sealed_users += 1;
                    }
                }
                if collection == "tenants" {
                    match sealed_at(&doc, "settings.billing.billingEmail") {
                        Some(true) => findings.sealed_tenants += 1,
                        Some(false) => findings.problems.push(format!("{name}.tenants {id} billingEmail: stored unsealed")),
                        None => {}
                    }
                }
            }
        }
    }
    Ok(())
}

fn scan_logs(dir: &str, findings: &mut Findings) -> std::io::Result<(u64, u64)> {
    let (mut lines, mut naming_users) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        for (n, line) in std::fs::read_to_string(&path)?.lines().enumerate() {
            lines += 1;
            if has_email(line) {
                findings.problems.push(format!("{}:{}: an e-mail address in a log line", path.display(), n + 1));
            }
            if line.contains("\"userId\"") {
                naming_users += 1;
            }
        }
    }
    Ok((lines, naming_users))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [uri, logs] = args.as_slice() else {
        eprintln!("usage: pii-scan MONGODB_URI LOG_DIR");
        return ExitCode::from(2);
    };
    let mut findings = Findings::default();
    if let Err(e) = scan_databases(uri, &mut findings).await {
        eprintln!("pii-scan: the database scan failed: {e}");
        return ExitCode::FAILURE;
    }
    let (lines, naming_users) = match scan_logs(logs, &mut findings) {
        Ok(counts) => counts,
        Err(e) => {
            eprintln!("pii-scan: the log scan failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "pii-scan: {} documents, {} sealed user records ({} distinct), {} sealed billing e-mails; {lines} log lines, {naming_users} naming a user id",
        findings.documents,
        findings.sealed_users,
        findings.user_ids.len(),
        findings.sealed_tenants
    );
    // An empty scan proves nothing: the suites make hundreds of users and log thousands of lines.
    if findings.sealed_users < 50 || findings.sealed_tenants < 20 || lines < 1_000 || naming_users == 0 {
        findings.problems.push("the scans saw too little input to mean anything (did the suites run, and capture their logs?)".into());
    }
    for problem in &findings.problems {
        eprintln!("pii-scan: {problem}");
    }
    if findings.problems.is_empty() {
        println!("pii-scan: no personal data in the clear");
        ExitCode::SUCCESS
    } else {
        eprintln!("pii-scan: {} problem(s)", findings.problems.len());
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::has_email;

    #[test]
    fn e_mail_shapes_are_found_and_others_are_not() {
        for yes in ["ada@example.test", "x \"a.b+c@d-e.example\" y", "admin@acme.example,", "New.Hire@Acme.example"] {
            assert!(has_email(yes), "{yes}");
        }
        for no in ["@", "a@b", "user@localhost", "tn_abc", "pending:65f0", "a@b.1", "x@ y.example", "mongodb://u:p@127.0.0.1:27017/"] {
            assert!(!has_email(no), "{no}");
        }
    }
}
