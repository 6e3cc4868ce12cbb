//! Request bodies: typed, unknown fields refused, then validated into domain types. No string
//! from a client can become a query operator: every field is a string, checked here.

use serde::Deserialize;
use shared::error::{ApiError, Check};
use shared::ids::{Domain, Email};
use shared::plans::Plan;
use shared::text::{free_text, https_url};

/// The longest tenant name.
pub const MAX_NAME: usize = 100;
/// The longest suspension reason.
pub const MAX_REASON: usize = 500;
/// The longest logo URL.
pub const MAX_LOGO: usize = 2048;
/// Themes a tenant may pick.
pub const THEMES: [&str; 3] = ["default", "light", "dark"];

fn name(raw: &str) -> Result<String, String> {
    free_text(raw, MAX_NAME)
}

/// `POST /tenants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateTenantBody {
    name: String,
    domain: Option<String>,
    admin_email: String,
    plan: Option<String>,
}

/// A validated tenant creation.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub name: String,
    pub domain: Option<Domain>,
    pub admin_email: Email,
    pub plan: Plan,
}

impl CreateTenantBody {
    /// Checks every field; an unknown plan is a 400, never a silent `free`.
    pub fn validate(self) -> Result<NewTenant, ApiError> {
        let mut c = Check::default();
        let name = c.field("name", name(&self.name));
        let domain = self.domain.map(|d| c.field("domain", Domain::parse(d)));
        let admin_email = c.field("adminEmail", Email::parse(self.admin_email));
        let plan = self.plan.map(|p| c.field("plan", p.parse::<Plan>()));
        c.done(|| NewTenant {
            name: name.expect("checked"),
            domain: domain.map(|d| d.expect("checked")),
            admin_email: admin_email.expect("checked"),
            plan: plan.map(|p| p.expect("checked")).unwrap_or(Plan::Free),
        })
    }
}

/// `PATCH /tenants/{tenantId}`: the allow-list of updatable fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantBody {
    name: Option<String>,
    domain: Option<String>,
}

/// A validated update of a tenant's own fields.
#[derive(Debug, Clone, Default)]
pub struct TenantChanges {
    pub name: Option<String>,
    pub domain: Option<Domain>,
}

impl UpdateTenantBody {
    /// Checks the fields; at least one must be given.
    pub fn validate(self) -> Result<TenantChanges, ApiError> {
        if self.name.is_none() && self.domain.is_none() {
            return Err(ApiError::invalid("body", "give at least one of name, domain"));
        }
        let mut c = Check::default();
        let name = self.name.map(|n| c.field("name", name(&n)));
        let domain = self.domain.map(|d| c.field("domain", Domain::parse(d)));
        c.done(|| TenantChanges { name: name.flatten(), domain: domain.flatten() })
    }
}

/// `POST /tenants/{tenantId}/suspend` (the body is optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspendBody {
    reason: Option<String>,
}

impl SuspendBody {
    /// The trimmed reason, if any: a blank one is no reason, not an error, since the body is optional.
    pub fn validate(self) -> Result<Option<String>, ApiError> {
        match self.reason.filter(|r| !r.trim().is_empty()) {
            Some(r) => free_text(&r, MAX_REASON).map(Some).map_err(|e| ApiError::invalid("reason", e)),
            None => Ok(None),
        }
    }
}

/// `PATCH /tenants/{tenantId}/settings/exports`: whether the tenant is exported nightly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSettingsBody {
    pub nightly: bool,
}

/// `POST /tenants/{tenantId}/restore`: the export of that tenant to load into a new tenant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestoreBody {
    export_id: String,
}

impl RestoreBody {
    /// The export's id: an export's (`ex_…`), never another job's.
    pub fn validate(self) -> Result<shared::jobs::JobId, ApiError> {
        let id = shared::jobs::JobId::try_from(self.export_id).map_err(|e| ApiError::invalid("exportId", e.0))?;
        if !id.as_str().starts_with("ex_") {
            return Err(ApiError::invalid("exportId", "must be an export's id (ex_…)"));
        }
        Ok(id)
    }
}

/// `PATCH /tenants/{tenantId}/settings/customization`: merged field by field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CustomizationBody {
    logo: Option<String>,
    primary_color: Option<String>,
    theme: Option<String>,
}

/// Validated customization fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomizationChanges {
    pub logo: Option<String>,
    pub primary_color: Option<String>,
    pub theme: Option<String>,
}

fn color(raw: String) -> Result<String, String> {
    let ok = raw.len() == 7 && raw.starts_with('#') && raw[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err("must be a colour such as #336699".into())
    }
}

fn theme(raw: String) -> Result<String, String> {
    if THEMES.contains(&raw.as_str()) {
        Ok(raw)
    } else {
        Err(format!("must be one of {}", THEMES.join(", ")))
    }
}

impl CustomizationBody {
    /// Checks each given field; at least one must be given.
    pub fn validate(self) -> Result<CustomizationChanges, ApiError> {
        if self.logo.is_none() && self.primary_color.is_none() && self.theme.is_none() {
            return Err(ApiError::invalid("body", "give at least one of logo, primaryColor, theme"));
        }
        let mut c = Check::default();
        let logo = self.logo.map(|v| c.field("logo", https_url(&v, MAX_LOGO)));
        let primary_color = self.primary_color.map(|v| c.field("primaryColor", color(v)));
        let theme = self.theme.map(|v| c.field("theme", theme(v)));
        c.done(|| CustomizationChanges { logo: logo.flatten(), primary_color: primary_color.flatten(), theme: theme.flatten() })
    }
}

/// `PATCH /tenants/{tenantId}/settings/billing`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BillingBody {
    plan: Option<String>,
    billing_email: Option<String>,
    audit_retention_days: Option<i64>,
}

/// A validated billing change.
#[derive(Debug, Clone, Default)]
pub struct BillingChanges {
    pub plan: Option<Plan>,
    pub billing_email: Option<Email>,
    /// An enterprise tenant's own audit retention (checked against the plan by the service).
    pub audit_retention_days: Option<i64>,
}

impl BillingBody {
    /// Checks the fields; at least one must be given.
    pub fn validate(self) -> Result<BillingChanges, ApiError> {
        if self.plan.is_none() && self.billing_email.is_none() && self.audit_retention_days.is_none() {
            return Err(ApiError::invalid("body", "give at least one of plan, billingEmail, auditRetentionDays"));
        }
        let mut c = Check::default();
        let plan = self.plan.map(|p| c.field("plan", p.parse::<Plan>()));
        let billing_email = self.billing_email.map(|e| c.field("billingEmail", Email::parse(e)));
        let max = shared::plans::MAX_AUDIT_RETENTION_DAYS;
        let days = self.audit_retention_days.map(|d| {
            c.field("auditRetentionDays", if (1..=max).contains(&d) { Ok(d) } else { Err(format!("must be from 1 to {max} days")) })
        });
        c.done(|| BillingChanges { plan: plan.flatten(), billing_email: billing_email.flatten(), audit_retention_days: days.flatten() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(json: &str) -> Result<NewTenant, ApiError> {
        serde_json::from_str::<CreateTenantBody>(json).map_err(|e| ApiError::invalid("body", e.to_string()))?.validate()
    }

    #[test]
    fn a_valid_creation_defaults_to_the_free_plan() {
        let t = create(r#"{"name":" Acme ","adminEmail":"A@Acme.example"}"#).unwrap();
        assert_eq!((t.name.as_str(), t.plan, t.admin_email.as_str()), ("Acme", Plan::Free, "a@acme.example"));
    }

    #[test]
    fn every_bad_field_is_listed() {
        let Err(ApiError::BadRequest { details, .. }) =
            create(r#"{"name":"","adminEmail":"nope","plan":"platinum","domain":"bad domain"}"#)
        else {
            panic!()
        };
        let fields: Vec<_> = details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["name", "domain", "adminEmail", "plan"]);
    }

    #[test]
    fn operator_injection_and_unknown_fields_do_not_parse() {
        assert!(serde_json::from_str::<CreateTenantBody>(r#"{"name":{"$ne":""},"adminEmail":"a@b.example"}"#).is_err());
        assert!(serde_json::from_str::<CreateTenantBody>(r#"{"name":"a","adminEmail":"a@b.example","status":"x"}"#).is_err());
        assert!(serde_json::from_str::<UpdateTenantBody>(r#"{"settings":{}}"#).is_err());
    }

    #[test]
    fn customization_is_validated_field_by_field() {
        let ok: CustomizationBody = serde_json::from_str(r##"{"primaryColor":"#AABBCC"}"##).unwrap();
        assert_eq!(ok.validate().unwrap().primary_color.as_deref(), Some("#aabbcc"));
        for bad in [r#"{"logo":"javascript:alert(1)"}"#, r#"{"theme":"neon"}"#, r#"{"primaryColor":"red"}"#, "{}"] {
            let body: CustomizationBody = serde_json::from_str(bad).unwrap();
            assert!(body.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_logo_that_breaks_out_of_an_attribute_is_refused() {
        let body = CustomizationBody {
            logo: Some(r#"https://x"><svg/onload=alert(1)>@evil.example/a.png"#.into()),
            primary_color: None,
            theme: None,
        };
        let Err(ApiError::BadRequest { details, .. }) = body.validate() else { panic!() };
        assert_eq!(details.iter().map(|d| d.field.as_str()).collect::<Vec<_>>(), ["logo"]);
    }

    #[test]
    fn logos_with_credentials_or_without_https_are_refused() {
        for bad in ["https://user:pw@cdn.example/a.png", "http://cdn.example/a.png"] {
            let body = CustomizationBody { logo: Some(bad.into()), primary_color: None, theme: None };
            assert!(body.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cdn_logo_is_stored_as_sent() {
        let url = "https://cdn.acme.example/logo.png?v=2";
        let body = CustomizationBody { logo: Some(url.into()), primary_color: None, theme: None };
        assert_eq!(body.validate().unwrap().logo.as_deref(), Some(url));
    }

    #[test]
    fn a_tenant_name_with_a_bidi_override_is_refused() {
        // A JSON escape, as a client would most likely send it.
        let Err(ApiError::BadRequest { details, .. }) = create(r#"{"name":"Acme\u202Eevil","adminEmail":"a@acme.example"}"#) else {
            panic!()
        };
        assert_eq!(details.iter().map(|d| d.field.as_str()).collect::<Vec<_>>(), ["name"]);
    }

    #[test]
    fn a_renamed_tenant_name_with_a_byte_order_mark_is_refused() {
        let body = UpdateTenantBody { name: Some("Ac\u{FEFF}me".into()), domain: None };
        assert!(body.validate().is_err());
    }

    #[test]
    fn a_persian_tenant_name_keeps_its_zero_width_non_joiner() {
        let body = UpdateTenantBody { name: Some("می\u{200C}خواهم".into()), domain: None };
        assert_eq!(body.validate().unwrap().name.as_deref(), Some("می\u{200C}خواهم"));
    }

    #[test]
    fn a_blank_suspension_reason_is_no_reason() {
        for blank in [None, Some(""), Some("  \n ")] {
            let body = SuspendBody { reason: blank.map(str::to_owned) };
            assert_eq!(body.validate().unwrap(), None, "{blank:?}");
        }
    }

    #[test]
    fn a_suspension_reason_is_trimmed_and_checked() {
        let ok = SuspendBody { reason: Some(" Unpaid invoices ".into()) };
        assert_eq!(ok.validate().unwrap().as_deref(), Some("Unpaid invoices"));
        for bad in ["x".repeat(MAX_REASON + 1), "Unpaid\u{202E}".into(), "Unpaid\u{7}".into()] {
            assert!(SuspendBody { reason: Some(bad.clone()) }.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_empty_patch_is_refused() {
        let body: UpdateTenantBody = serde_json::from_str("{}").unwrap();
        assert!(body.validate().is_err());
    }
}
