//! Request bodies: typed, unknown fields refused, then validated into one [`Onboarding`], the
//! input of the saga whether it came through `POST /onboarding` or `POST /tenants`.

use serde::Deserialize;
use shared::error::{ApiError, Check};
use shared::ids::{Domain, Email};
use shared::plans::Plan;
use shared::text::free_text;
use tenants::input::{CreateTenantBody, CustomizationBody, CustomizationChanges, NewTenant, MAX_NAME};

/// The longest admin first or last name.
pub const MAX_PERSON_NAME: usize = 100;

/// `POST /onboarding`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OnboardingBody {
    tenant_name: String,
    domain: Option<String>,
    plan: Option<String>,
    admin_email: String,
    admin_first_name: String,
    admin_last_name: String,
    customization: Option<CustomizationBody>,
}

/// A validated onboarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onboarding {
    pub tenant_name: String,
    pub domain: Option<Domain>,
    pub plan: Plan,
    pub admin_email: Email,
    pub admin_first_name: String,
    pub admin_last_name: String,
    pub customization: Option<CustomizationChanges>,
}

impl OnboardingBody {
    /// Checks every field; an unknown plan is a 400, never a silent `free`.
    pub fn validate(self) -> Result<Onboarding, ApiError> {
        let mut c = Check::default();
        let tenant_name = c.field("tenantName", free_text(&self.tenant_name, MAX_NAME));
        let domain = self.domain.map(|d| c.field("domain", Domain::parse(d)));
        let plan = self.plan.map(|p| c.field("plan", p.parse::<Plan>()));
        let admin_email = c.field("adminEmail", Email::parse(self.admin_email));
        let first = c.field("adminFirstName", free_text(&self.admin_first_name, MAX_PERSON_NAME));
        let last = c.field("adminLastName", free_text(&self.admin_last_name, MAX_PERSON_NAME));
        let customization = match self.customization.map(CustomizationBody::validate).transpose() {
            Ok(changes) => changes,
            Err(ApiError::BadRequest { details, message }) => {
                if details.is_empty() {
                    c.field::<(), _>("customization", Err(message));
                }
                for d in details {
                    c.field::<(), _>(&format!("customization.{}", d.field), Err(d.message));
                }
                None
            }
            Err(other) => return Err(other),
        };
        c.done(|| Onboarding {
            tenant_name: tenant_name.expect("checked"),
            domain: domain.map(|d| d.expect("checked")),
            plan: plan.map(|p| p.expect("checked")).unwrap_or(Plan::Free),
            admin_email: admin_email.expect("checked"),
            admin_first_name: first.expect("checked"),
            admin_last_name: last.expect("checked"),
            customization,
        })
    }
}

/// `POST /tenants`: today's contract (`CreateTenantRequest`), onboarded with the admin's
/// default names.
pub fn from_create_tenant(body: CreateTenantBody) -> Result<Onboarding, ApiError> {
    let NewTenant { name, domain, admin_email, plan } = body.validate()?;
    Ok(Onboarding {
        tenant_name: name,
        domain,
        plan,
        admin_email,
        admin_first_name: "Admin".into(),
        admin_last_name: "User".into(),
        customization: None,
    })
}

impl Onboarding {
    /// The request in one canonical form, every field in a fixed order: what a replay's body
    /// is compared by (as a keyed digest, never stored in clear).
    pub fn canonical(&self) -> Vec<u8> {
        let customization = self.customization.as_ref().map(|c| serde_json::json!([c.logo, c.primary_color, c.theme]));
        serde_json::json!([
            self.tenant_name,
            self.domain.as_ref().map(Domain::as_str),
            self.plan.as_str(),
            self.admin_email.as_str(),
            self.admin_first_name,
            self.admin_last_name,
            customization,
        ])
        .to_string()
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: serde_json::Value) -> Result<Onboarding, ApiError> {
        serde_json::from_value::<OnboardingBody>(value).map_err(|e| ApiError::invalid("body", e.to_string()))?.validate()
    }

    #[test]
    fn an_onboarding_is_checked_field_by_field() {
        let ok = body(serde_json::json!({"tenantName": "Acme", "adminEmail": "Ada@Acme.test", "adminFirstName": "Ada",
            "adminLastName": "Lovelace", "customization": {"theme": "dark"}}))
        .unwrap();
        assert_eq!(ok.plan, Plan::Free);
        assert_eq!(ok.admin_email.as_str(), "ada@acme.test");
        assert_eq!(ok.customization.unwrap().theme.as_deref(), Some("dark"));
        let Err(ApiError::BadRequest { details, .. }) = body(serde_json::json!({"tenantName": "", "adminEmail": "nope",
            "adminFirstName": "A", "adminLastName": "B", "plan": "gold", "customization": {"primaryColor": "red"}}))
        else {
            panic!("a 400")
        };
        let fields: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["tenantName", "plan", "adminEmail", "customization.primaryColor"]);
    }

    #[test]
    fn unknown_fields_and_operator_objects_do_not_parse() {
        for bad in [
            serde_json::json!({"tenantName": "A", "adminEmail": "a@b.test", "adminFirstName": "A", "adminLastName": "B", "password": "x"}),
            serde_json::json!({"tenantName": {"$ne": ""}, "adminEmail": "a@b.test", "adminFirstName": "A", "adminLastName": "B"}),
        ] {
            assert!(serde_json::from_value::<OnboardingBody>(bad).is_err());
        }
    }

    #[test]
    fn the_canonical_form_tells_bodies_apart_and_ignores_spelling() {
        let one =
            body(serde_json::json!({"tenantName": "Acme", "adminEmail": "ada@acme.test", "adminFirstName": "Ada", "adminLastName": "L"}));
        let same = body(
            serde_json::json!({"adminLastName": "L", "adminFirstName": "Ada", "adminEmail": "ADA@acme.test", "tenantName": "Acme", "plan": "free"}),
        );
        let other =
            body(serde_json::json!({"tenantName": "Acme", "adminEmail": "ada@acme.test", "adminFirstName": "Ada", "adminLastName": "M"}));
        assert_eq!(one.as_ref().unwrap().canonical(), same.unwrap().canonical());
        assert_ne!(one.unwrap().canonical(), other.unwrap().canonical());
    }
}
