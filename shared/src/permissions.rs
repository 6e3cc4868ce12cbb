//! The permission catalogue: the one list of actions and resources a permission may name
//! (docs/ARCHITECTURE.md §4, §12). Roles and API keys are validated against it, and nobody grants
//! what they lack.

use crate::ids::{InvalidValue, Permission};

/// What a permission may allow. `export` is for `export:tenant`: every personal field of the
/// tenant, carried out of it, which no `read` permission implies.
pub const ACTIONS: [&str; 5] = ["read", "create", "update", "delete", "export"];

/// What a permission may be about.
pub const RESOURCES: [&str; 6] = ["tenant", "users", "roles", "profile", "api-keys", "audit-logs"];

/// A permission in one of the catalogue's forms: `*`, `action:*` or `action:resource`.
pub fn in_catalogue(permission: &Permission) -> Result<(), InvalidValue> {
    let p = permission.as_str();
    if p == "*" {
        return Ok(());
    }
    let (action, resource) = p.split_once(':').unwrap_or((p, ""));
    if !ACTIONS.contains(&action) {
        return Err(InvalidValue(format!("unknown permission {p}: the action must be one of {}", ACTIONS.join(", "))));
    }
    if resource != "*" && !RESOURCES.contains(&resource) {
        return Err(InvalidValue(format!("unknown permission {p}: the resource must be * or one of {}", RESOURCES.join(", "))));
    }
    Ok(())
}

/// The most permissions a role or an API key may list.
pub const MAX_LISTED: usize = 50;

/// A requested list of permissions: 1 to [`MAX_LISTED`], each in the catalogue, none twice.
/// The error names the first offender.
pub fn parse_requested(raw: Vec<String>) -> Result<Vec<Permission>, String> {
    if raw.is_empty() || raw.len() > MAX_LISTED {
        return Err(format!("must list 1 to {MAX_LISTED} permissions"));
    }
    let mut out: Vec<Permission> = Vec::with_capacity(raw.len());
    for p in raw {
        let permission = Permission::parse(p.clone()).map_err(|_| format!("unknown permission {p}"))?;
        in_catalogue(&permission).map_err(|e| e.0)?;
        if out.contains(&permission) {
            return Err(format!("{p} is listed twice"));
        }
        out.push(permission);
    }
    Ok(out)
}

/// The first of `wanted` that none of `held` covers, if any: granting it would be an escalation.
pub fn first_not_held<'a>(held: &[Permission], wanted: &'a [Permission]) -> Option<&'a Permission> {
    wanted.iter().find(|w| !held.iter().any(|h| h.covers(w.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Permission {
        Permission::parse(s).unwrap()
    }

    #[test]
    fn the_catalogue_takes_its_three_forms() {
        for ok in ["*", "read:*", "read:users", "delete:api-keys", "update:profile", "read:audit-logs"] {
            assert!(in_catalogue(&p(ok)).is_ok(), "{ok}");
        }
    }

    #[test]
    fn an_unknown_action_or_resource_is_named() {
        let err = in_catalogue(&p("launch:rockets")).unwrap_err();
        assert!(err.0.contains("launch:rockets"), "{}", err.0);
        assert!(in_catalogue(&p("read:rockets")).is_err());
        assert!(in_catalogue(&p("manage:*")).is_err());
    }

    #[test]
    fn nobody_grants_what_they_lack() {
        let viewer = [p("read:*")];
        assert_eq!(first_not_held(&viewer, &[p("read:users"), p("read:*")]), None);
        assert_eq!(first_not_held(&viewer, &[p("read:users"), p("update:users")]).map(Permission::as_str), Some("update:users"));
        assert_eq!(first_not_held(&[p("read:users")], &[p("read:*")]).map(Permission::as_str), Some("read:*"));
        assert_eq!(first_not_held(&[p("*")], &[p("*")]), None);
        assert_eq!(first_not_held(&[p("read:*")], &[p("*")]).map(Permission::as_str), Some("*"));
    }
}
