//! Setup on deploy: template.yaml's custom resource `SetupOnDeploy` invokes this function on
//! every stack create and every update of the function's code, so that the indexes exist before
//! the first request.
//!
//! Create and Update run `setup`, then `up` within the invocation's time: a migration longer than
//! that is stopped and carries on, resumable, on the schedule (each migration is idempotent and
//! works in batches; its lease expires by itself). Delete touches no data: deleting the stack
//! must never drop a tenant's indexes or documents (the data outlives the stack). Every outcome
//! is PUT to CloudFormation's `ResponseURL`; without that answer a stack waits until the
//! resource's service timeout.

use crate::error::MigrationError;
use crate::report::Report;
use crate::runner::{setup, up_registered};
use serde::Deserialize;
use serde_json::{json, Value};
use shared::db::Db;
use shared::directory::Directory;
use std::time::Duration;

/// The physical id of the one setup resource; the same on every update, so that CloudFormation
/// never "replaces" it (a replacement would send a Delete of the old id).
pub const PHYSICAL_ID: &str = "tenancy-setup";
/// Time kept back from the invocation's deadline to send the response.
const RESPONSE_MARGIN: Duration = Duration::from_secs(10);
/// CloudFormation refuses a response larger than 4096 bytes: the reason is cut well below that.
const MAX_REASON: usize = 1000;

/// What CloudFormation asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// A custom resource request (the fields this handler uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceEvent {
    pub request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    #[serde(default)]
    pub physical_resource_id: Option<String>,
}

impl CustomResourceEvent {
    /// The event, if it is a custom resource request (`RequestType` and `ResponseURL`).
    pub fn parse(event: &Value) -> Option<Result<Self, MigrationError>> {
        if event.get("RequestType").is_none() || event.get("ResponseURL").is_none() {
            return None;
        }
        Some(serde_json::from_value(event.clone()).map_err(|e| MigrationError::BadEvent(format!("custom resource request: {e}"))))
    }
}

/// What the deploy did, as the response's `Data` and the Lambda's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: &'static str,
    pub reason: String,
    pub data: Value,
}

/// Runs the request and PUTs its outcome to the ResponseURL. `budget` is the invocation's time
/// left. Fails only if the response could not be delivered (the invocation is then retried).
pub async fn handle(db: &Db, directory: &dyn Directory, event: &CustomResourceEvent, budget: Duration) -> Result<Value, MigrationError> {
    let outcome = run(db, directory, event.request_type, budget.saturating_sub(RESPONSE_MARGIN)).await;
    let body = response_body(event, &outcome);
    tracing::info!(requestType = ?event.request_type, status = outcome.status, reason = %outcome.reason, "custom resource request done");
    send(&event.response_url, &body).await?;
    Ok(body)
}

async fn run(db: &Db, directory: &dyn Directory, request: RequestType, budget: Duration) -> Outcome {
    if request == RequestType::Delete {
        return Outcome { status: "SUCCESS", reason: "Delete leaves the data and its indexes in place".into(), data: json!({}) };
    }
    let created = match setup(db).await {
        Ok(Report::Setup { created, .. }) => created,
        Ok(_) => 0,
        Err(e) => return failed("setup", &e),
    };
    match tokio::time::timeout(budget, up_registered(db, directory)).await {
        Ok(Ok(Report::Up { applied, .. })) => Outcome {
            status: "SUCCESS",
            reason: format!("setup created {created} indexes; up applied {} migrations", applied.len()),
            data: json!({"indexesCreated": created, "migrationsApplied": applied.len(), "deferred": false}),
        },
        Ok(Ok(_)) => Outcome { status: "SUCCESS", reason: "setup and up done".into(), data: json!({"indexesCreated": created}) },
        // A scheduled run holds the lease: it is applying the same migrations.
        Ok(Err(MigrationError::LockBusy)) => deferred(created, "another run holds the migrations lease"),
        Ok(Err(e)) => failed("up", &e),
        Err(_) => deferred(created, "the migrations take longer than one invocation"),
    }
}

fn deferred(created: usize, why: &str) -> Outcome {
    Outcome {
        status: "SUCCESS",
        reason: format!("setup created {created} indexes; {why}: they carry on, resumable, on the schedule"),
        data: json!({"indexesCreated": created, "migrationsApplied": 0, "deferred": true}),
    }
}

fn failed(step: &str, error: &MigrationError) -> Outcome {
    let mut reason = format!("{step} failed: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if reason.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    tracing::error!(step, %reason, "setup on deploy failed");
    Outcome { status: "FAILED", reason, data: json!({}) }
}

/// The response document CloudFormation expects.
pub fn response_body(event: &CustomResourceEvent, outcome: &Outcome) -> Value {
    json!({
        "Status": outcome.status,
        "Reason": outcome.reason,
        "PhysicalResourceId": event.physical_resource_id.as_deref().unwrap_or(PHYSICAL_ID),
        "StackId": event.stack_id,
        "RequestId": event.request_id,
        "LogicalResourceId": event.logical_resource_id,
        "NoEcho": false,
        "Data": outcome.data,
    })
}

/// PUTs the response to the pre-signed URL. The URL is signed without a content type, so the
/// request must send an empty one.
async fn send(url: &str, body: &Value) -> Result<(), MigrationError> {
    let undelivered = MigrationError::Undelivered;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| undelivered(e.to_string()))?;
    let response = client
        .put(url)
        .header(reqwest::header::CONTENT_TYPE, "")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| undelivered(e.to_string()))?;
    if !response.status().is_success() {
        return Err(undelivered(format!("the ResponseURL answered {}", response.status())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_resource_request_is_recognised_and_others_are_not() {
        let event = json!({"RequestType": "Update", "ResponseURL": "http://127.0.0.1:1/r", "StackId": "s", "RequestId": "r",
            "LogicalResourceId": "SetupOnDeploy", "PhysicalResourceId": "tenancy-setup", "ResourceProperties": {}});
        let parsed = CustomResourceEvent::parse(&event).unwrap().unwrap();
        assert_eq!(parsed.request_type, RequestType::Update);
        assert!(CustomResourceEvent::parse(&json!({"action": "up"})).is_none());
        assert!(CustomResourceEvent::parse(&json!({"RequestType": "Drop", "ResponseURL": "u"})).unwrap().is_err());
    }

    #[test]
    fn a_failure_reason_is_cut_to_fit_the_response() {
        let long = MigrationError::BadEvent("é".repeat(3000));
        let outcome = failed("up", &long);
        assert_eq!(outcome.status, "FAILED");
        assert!(outcome.reason.len() <= MAX_REASON);
    }
}
