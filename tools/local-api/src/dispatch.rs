//! Which function an event of `events/` goes to, which `sam local invoke -e` is told by hand: an
//! API Gateway proxy event to the function its route's integration names in openapi.json, any
//! other event to the one function whose crate declares that it takes events of that shape
//! ([`shared::event_kind::EventFunction`]).

use serde_json::Value;
use shared::event_kind::EventFunction;

/// Every function other than an HTTP context's, as its crate declares it. Registering a new
/// binary is one entry here.
pub const EVENT_FUNCTIONS: &[EventFunction] = &[
    authorizer::FUNCTION,
    users::trigger::FUNCTION,
    audit::retention::FUNCTION,
    migrations::FUNCTION,
    onboarding::FUNCTION,
    tenants::jobs::FUNCTION,
];

/// An API Gateway proxy event (a REQUEST authorizer's event has the same fields, and a `type`).
pub fn is_proxy_event(event: &Value) -> bool {
    event.get("httpMethod").is_some() && event.get("resource").is_some() && event.get("type").is_none()
}

/// The logical id of the one function that takes `event` (read from the file `file_name`); an
/// event that no function takes, or that several would, is an error naming the file.
pub fn function_for_event(file_name: &str, event: &Value) -> Result<String, String> {
    let mut takers: Vec<String> = EVENT_FUNCTIONS.iter().filter(|f| f.takes(event)).map(|f| f.logical_id.to_owned()).collect();
    if is_proxy_event(event) {
        let (method, path) = (event["httpMethod"].as_str().unwrap_or(""), event["path"].as_str().unwrap_or(""));
        let table = crate::route_table()?;
        let matched = table.find(method, path).ok_or(format!("{file_name}: no route for {method} {path}"))?;
        takers.push(matched.route.function.clone());
    }
    match takers.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("{file_name}: no function takes this event")),
        several => Err(format!("{file_name}: several functions take this event: {}", several.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_that_no_function_or_two_functions_take_is_an_error_naming_its_file() {
        let none = function_for_event("odd.json", &json!({"hello": "world"})).unwrap_err();
        assert!(none.starts_with("odd.json: no function"), "{none}");
        // An action and a custom resource at once: migrations alone takes both, so still one.
        let both = json!({"action": "up", "RequestType": "Create", "ResponseURL": "u"});
        assert_eq!(function_for_event("both.json", &both).unwrap(), "MigrationsFunction");
        // A trigger that also looks like an authorizer's event: two functions.
        let ambiguous = json!({"triggerSource": "PostConfirmation_ConfirmSignUp", "type": "REQUEST", "methodArn": "arn"});
        let error = function_for_event("ambiguous.json", &ambiguous).unwrap_err();
        assert!(error.starts_with("ambiguous.json: several functions") && error.contains("PostConfirmationFunction"), "{error}");
    }

    #[test]
    fn each_scheduled_event_goes_to_the_function_its_rule_names() {
        let scheduled = |rule: &str| {
            json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {},
                "resources": [format!("arn:aws:events:us-east-1:123456789012:rule/tenancy-{rule}Scheduled-1A2B")]})
        };
        assert_eq!(function_for_event("a.json", &scheduled("AuditRetentionFunction")).unwrap(), "AuditRetentionFunction");
        assert_eq!(function_for_event("m.json", &scheduled("MigrationsFunction")).unwrap(), "MigrationsFunction");
    }
}
