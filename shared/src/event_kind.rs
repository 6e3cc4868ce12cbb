//! The Lambdas other than the HTTP contexts' (the authorizer, triggers, scheduled jobs) declare
//! here, next to their handlers, the kind of event each takes; a host handed an event and no
//! function (the local `invoke`) finds the one function that takes it.

/// The kind of event a Lambda other than an HTTP context's takes, declared by its crate next to
/// its handler ([`EventFunction`]). A host that is handed an event and no function (the local
/// `invoke`) finds the one function that takes it; API Gateway's proxy events go by
/// openapi.json's routes instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `{"action": …}`: a manual invoke, or a schedule's constant input.
    ScheduledAction,
    /// EventBridge's `Scheduled Event` from one of the function's own rules: SAM names a rule
    /// `<stack>-<function's logical id><event name>-<suffix>`, and the event lists its ARN.
    ScheduledEvent,
    /// A Cognito user pool trigger, by its name in template.yaml (`PostConfirmation`): the
    /// event's `triggerSource` is that name, `_`, and the flow (`PostConfirmation_ConfirmSignUp`).
    CognitoTrigger(&'static str),
    /// A CloudFormation custom resource request (`RequestType` and `ResponseURL`).
    CustomResource,
    /// An API Gateway REQUEST authorizer's event (`"type": "REQUEST"` and `methodArn`).
    ApiGatewayAuthorizer,
    /// An SQS event source's batch from the queue of this logical id (CloudFormation names a
    /// queue `<stack>-<logical id>-<suffix>`, and each record carries its ARN).
    SqsQueue(&'static str),
}

impl EventKind {
    /// Whether `event` has this kind's shape, for the function `logical_id`.
    pub fn matches(self, logical_id: &str, event: &serde_json::Value) -> bool {
        let text = |name: &str| event.get(name).and_then(serde_json::Value::as_str);
        match self {
            Self::ScheduledAction => event.get("action").is_some(),
            Self::ScheduledEvent => {
                let own_rule = format!("-{logical_id}");
                text("detail-type") == Some("Scheduled Event")
                    && text("source") == Some("aws.events")
                    && event.get("resources").and_then(serde_json::Value::as_array).is_some_and(|resources| {
                        resources
                            .iter()
                            .filter_map(serde_json::Value::as_str)
                            .any(|arn| arn.split_once(":rule/").is_some_and(|(_, rule)| rule.contains(&own_rule)))
                    })
            }
            Self::CognitoTrigger(trigger) => {
                text("triggerSource").and_then(|source| source.strip_prefix(trigger)).is_some_and(|flow| flow.starts_with('_'))
            }
            Self::CustomResource => event.get("RequestType").is_some() && event.get("ResponseURL").is_some(),
            Self::ApiGatewayAuthorizer => text("type") == Some("REQUEST") && event.get("methodArn").is_some(),
            Self::SqsQueue(queue) => event.get("Records").and_then(serde_json::Value::as_array).is_some_and(|records| {
                !records.is_empty()
                    && records.iter().all(|r| {
                        r.get("eventSource").and_then(serde_json::Value::as_str) == Some("aws:sqs")
                            && r.get("eventSourceARN")
                                .and_then(serde_json::Value::as_str)
                                .and_then(|arn| arn.rsplit(':').next())
                                .is_some_and(|name| name.contains(&format!("-{queue}-")))
                    })
            }),
        }
    }
}

/// A Lambda other than an HTTP context's, as its crate declares it: its logical id in
/// template.yaml and the kinds of event it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFunction {
    pub logical_id: &'static str,
    pub takes: &'static [EventKind],
}

impl EventFunction {
    /// Whether this function takes `event`.
    pub fn takes(&self, event: &serde_json::Value) -> bool {
        self.takes.iter().any(|kind| kind.matches(self.logical_id, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scheduled(rule: &str) -> serde_json::Value {
        json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {},
            "resources": [format!("arn:aws:events:us-east-1:123456789012:rule/{rule}")]})
    }

    #[test]
    fn a_scheduled_event_goes_to_the_function_its_rule_is_named_after() {
        let event = scheduled("tenancy-platform-AuditRetentionFunctionScheduled-7G8H9I0J1K2L");
        assert!(EventKind::ScheduledEvent.matches("AuditRetentionFunction", &event));
        // One logical id ending another's is still not its rule.
        assert!(!EventKind::ScheduledEvent.matches("AuditFunction", &event));
        assert!(!EventKind::ScheduledEvent.matches("RetentionFunction", &event));
        assert!(!EventKind::ScheduledEvent.matches("AuditRetentionFunction", &json!({"detail-type": "Scheduled Event"})));
    }

    #[test]
    fn each_kind_takes_its_own_shape_only() {
        let trigger = json!({"triggerSource": "PostConfirmation_ConfirmSignUp"});
        assert!(EventKind::CognitoTrigger("PostConfirmation").matches("F", &trigger));
        assert!(!EventKind::CognitoTrigger("PreTokenGeneration").matches("F", &trigger));
        assert!(!EventKind::CognitoTrigger("PostConfirm").matches("F", &trigger));
        let authorizer = json!({"type": "REQUEST", "methodArn": "arn", "httpMethod": "GET", "resource": "/users"});
        assert!(EventKind::ApiGatewayAuthorizer.matches("F", &authorizer));
        assert!(!EventKind::ApiGatewayAuthorizer.matches("F", &json!({"httpMethod": "GET", "resource": "/users"})));
        assert!(EventKind::CustomResource.matches("F", &json!({"RequestType": "Create", "ResponseURL": "u"})));
        assert!(EventKind::ScheduledAction.matches("F", &json!({"action": "up"})));
        for kind in [EventKind::ScheduledAction, EventKind::CustomResource, EventKind::ApiGatewayAuthorizer] {
            assert!(!kind.matches("F", &trigger), "{kind:?}");
        }
    }
}
