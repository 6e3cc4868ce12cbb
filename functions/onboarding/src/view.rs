//! What the onboarding routes answer.

use serde::Serialize;
use shared::saga::Saga;

/// `GET /onboarding/{onboardingId}`: where a saga stands, with no personal data.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnboardingView {
    pub onboarding_id: String,
    pub state: &'static str,
    pub steps: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    pub tenant_id: String,
    pub attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    pub created_at: String,
    pub updated_at: String,
}

/// Why a saga failed: a code and a message, never a value from the request.
#[derive(Debug, Serialize)]
pub struct LastError {
    pub code: String,
    pub message: String,
}

impl OnboardingView {
    pub fn new(saga: &Saga) -> Self {
        Self {
            onboarding_id: saga.id.clone(),
            state: saga.state.as_str(),
            steps: saga.steps.clone(),
            current_step: saga.current.clone(),
            tenant_id: saga.tenant_id.to_string(),
            attempts: saga.attempts,
            last_error: saga.error.as_ref().map(|e| LastError { code: e.code.clone(), message: e.message.clone() }),
            created_at: saga.created_at.try_to_rfc3339_string().unwrap_or_default(),
            updated_at: saga.updated_at.try_to_rfc3339_string().unwrap_or_default(),
        }
    }
}
