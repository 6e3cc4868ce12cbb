//! The static checks behind every scoped operation (DESIGN.md §5).
//!
//! They run before anything reaches the server and refuse, never rewrite: a request that could
//! read, write or name another tenant's data is a bug in the caller, and a loud error finds it
//! sooner than a silently "fixed" query would.

use mongodb::bson::{Bson, Document};

/// The field that carries the tenant on every tenant-scoped document.
pub const TENANT_FIELD: &str = "tenantId";
/// Timestamps the scope stamps itself; callers may not write them.
pub const MANAGED_FIELDS: [&str; 2] = ["createdAt", "updatedAt"];

/// Why a scoped operation was refused. Each variant names what it refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{site} names tenant '{found}', but the scope is tenant '{scope}'")]
    TenantMismatch { site: Site, found: String, scope: String },
    #[error("{site} puts a condition on tenantId other than the scope's own id")]
    TenantCondition { site: Site },
    #[error("update operator {operator} touches tenantId (path '{path}')")]
    TenantIdUpdate { operator: String, path: String },
    #[error("update operator {operator} touches '{path}', which the scope stamps itself")]
    ManagedFieldUpdate { operator: String, path: String },
    #[error("a replacement document is not allowed; use update operators such as $set")]
    ReplacementUpdate,
    #[error("update operator {0} is not allowed")]
    UnknownUpdateOperator(String),
    #[error("an empty update is not allowed")]
    EmptyUpdate,
    #[error("aggregation stage {stage} is not allowed in a tenant scope (at {path})")]
    ForbiddenStage { stage: String, path: String },
    #[error("server-side JavaScript ({operator}) is not allowed (at {path})")]
    ServerSideJavaScript { operator: String, path: String },
    #[error("aggregation stage {index} must be a document with exactly one stage name")]
    MalformedStage { index: usize },
}

/// Where in an operation the refused part was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    Filter,
    Document,
    Update,
    Pipeline,
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Site::Filter => "the filter",
            Site::Document => "the document",
            Site::Update => "the update",
            Site::Pipeline => "the pipeline",
        })
    }
}

/// Operators that run JavaScript on the server.
const SERVER_SIDE_JS: [&str; 3] = ["$where", "$function", "$accumulator"];

/// Stages that read another collection, write somewhere, or report on the server. Named so that
/// the error says exactly what was refused; anything not in [`ALLOWED_STAGES`] is refused too.
const FORBIDDEN_STAGES: [&str; 16] = [
    "$lookup",
    "$graphLookup",
    "$unionWith",
    "$out",
    "$merge",
    "$documents",
    "$collStats",
    "$indexStats",
    "$currentOp",
    "$changeStream",
    "$changeStreamSplitLargeEvent",
    "$listSessions",
    "$listLocalSessions",
    "$planCacheStats",
    "$search",
    "$searchMeta",
];

/// Stages that only reshape the documents already flowing through the pipeline. An allow-list,
/// so that a stage added to the server later is refused until someone has looked at it.
const ALLOWED_STAGES: [&str; 21] = [
    "$match",
    "$project",
    "$addFields",
    "$set",
    "$unset",
    "$group",
    "$sort",
    "$limit",
    "$skip",
    "$count",
    "$unwind",
    "$facet",
    "$bucket",
    "$bucketAuto",
    "$sortByCount",
    "$replaceRoot",
    "$replaceWith",
    "$sample",
    "$redact",
    "$setWindowFields",
    "$densify",
];

/// Update operators whose keys are field paths. Anything else is refused.
const FIELD_UPDATE_OPERATORS: [&str; 14] = [
    "$set",
    "$unset",
    "$inc",
    "$mul",
    "$min",
    "$max",
    "$rename",
    "$currentDate",
    "$push",
    "$pull",
    "$pullAll",
    "$addToSet",
    "$pop",
    "$setOnInsert",
];

fn is_path_of(path: &str, field: &str) -> bool {
    path == field || path.strip_prefix(field).is_some_and(|rest| rest.starts_with('.'))
}

/// Checks a filter: tenantId may appear only as the scope's own id, as a plain string, at any
/// depth; server-side JavaScript is refused at any depth.
pub fn check_filter(filter: &Document, tenant: &str, site: Site) -> Result<(), Refusal> {
    walk_filter(filter, tenant, site, "")
}

fn walk_filter(doc: &Document, tenant: &str, site: Site, at: &str) -> Result<(), Refusal> {
    for (key, value) in doc {
        let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
        if SERVER_SIDE_JS.contains(&key.as_str()) {
            return Err(Refusal::ServerSideJavaScript { operator: key.clone(), path });
        }
        // An expression comparing "$tenantId" is a condition on the tenant by another route.
        if key == "$expr" && mentions_tenant_path(value) {
            return Err(Refusal::TenantCondition { site });
        }
        if is_path_of(key, TENANT_FIELD) {
            match value {
                Bson::String(found) if found == tenant => {}
                Bson::String(found) => {
                    return Err(Refusal::TenantMismatch {
                        site,
                        found: found.clone(),
                        scope: tenant.to_owned(),
                    })
                }
                _ => return Err(Refusal::TenantCondition { site }),
            }
        }
        walk_value(value, tenant, site, &path)?;
    }
    Ok(())
}

fn mentions_tenant_path(value: &Bson) -> bool {
    match value {
        Bson::String(s) => s.strip_prefix('$').is_some_and(|p| is_path_of(p, TENANT_FIELD)),
        Bson::Document(d) => d.values().any(mentions_tenant_path),
        Bson::Array(items) => items.iter().any(mentions_tenant_path),
        _ => false,
    }
}

fn walk_value(value: &Bson, tenant: &str, site: Site, at: &str) -> Result<(), Refusal> {
    match value {
        Bson::Document(doc) => walk_filter(doc, tenant, site, at),
        Bson::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| walk_value(item, tenant, site, &format!("{at}.{i}"))),
        Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => {
            Err(Refusal::ServerSideJavaScript { operator: "JavaScript code".into(), path: at.into() })
        }
        _ => Ok(()),
    }
}

/// Checks a document to insert: a top-level tenantId must be the scope's own (it is then
/// harmless); JavaScript values are refused.
pub fn check_document(doc: &Document, tenant: &str) -> Result<(), Refusal> {
    if let Some(value) = doc.get(TENANT_FIELD) {
        match value {
            Bson::String(found) if found == tenant => {}
            Bson::String(found) => {
                return Err(Refusal::TenantMismatch {
                    site: Site::Document,
                    found: found.clone(),
                    scope: tenant.to_owned(),
                })
            }
            _ => return Err(Refusal::TenantCondition { site: Site::Document }),
        }
    }
    doc.iter().try_for_each(|(k, v)| match v {
        Bson::Document(_) | Bson::Array(_) | Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => {
            no_javascript(v, k)
        }
        _ => Ok(()),
    })
}

fn no_javascript(value: &Bson, at: &str) -> Result<(), Refusal> {
    match value {
        Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => {
            Err(Refusal::ServerSideJavaScript { operator: "JavaScript code".into(), path: at.into() })
        }
        Bson::Document(d) => d.iter().try_for_each(|(k, v)| no_javascript(v, &format!("{at}.{k}"))),
        Bson::Array(a) => a.iter().enumerate().try_for_each(|(i, v)| no_javascript(v, &format!("{at}.{i}"))),
        _ => Ok(()),
    }
}

/// Checks an update document: operators only, from a known list, none touching tenantId or the
/// managed timestamps, by any path, including as the target of `$rename`.
pub fn check_update(update: &Document) -> Result<(), Refusal> {
    if update.is_empty() {
        return Err(Refusal::EmptyUpdate);
    }
    for (operator, fields) in update {
        if !operator.starts_with('$') {
            return Err(Refusal::ReplacementUpdate);
        }
        if !FIELD_UPDATE_OPERATORS.contains(&operator.as_str()) {
            return Err(Refusal::UnknownUpdateOperator(operator.clone()));
        }
        let Bson::Document(fields) = fields else {
            return Err(Refusal::UnknownUpdateOperator(operator.clone()));
        };
        for (path, value) in fields {
            let mut paths = vec![path.as_str()];
            if operator == "$rename" {
                if let Bson::String(target) = value {
                    paths.push(target.as_str());
                }
            }
            for p in paths {
                let root = p.split('.').next().unwrap_or(p);
                if root == TENANT_FIELD {
                    return Err(Refusal::TenantIdUpdate { operator: operator.clone(), path: p.to_owned() });
                }
                if MANAGED_FIELDS.contains(&root) {
                    return Err(Refusal::ManagedFieldUpdate {
                        operator: operator.clone(),
                        path: p.to_owned(),
                    });
                }
            }
            no_javascript(value, path)?;
        }
    }
    Ok(())
}

/// Checks an aggregation pipeline: each stage from the allow-list, at any depth (inside `$facet`
/// too); no server-side JavaScript; `$match` stages follow the filter rules.
pub fn check_pipeline(pipeline: &[Document], tenant: &str) -> Result<(), Refusal> {
    check_stages(pipeline, tenant, "pipeline")
}

fn check_stages(stages: &[Document], tenant: &str, at: &str) -> Result<(), Refusal> {
    for (index, stage) in stages.iter().enumerate() {
        let mut names = stage.keys();
        let (Some(name), None) = (names.next(), names.next()) else {
            return Err(Refusal::MalformedStage { index });
        };
        let path = format!("{at}[{index}].{name}");
        if FORBIDDEN_STAGES.contains(&name.as_str()) || !ALLOWED_STAGES.contains(&name.as_str()) {
            return Err(Refusal::ForbiddenStage { stage: name.clone(), path });
        }
        let body = stage.get(name).unwrap_or(&Bson::Null);
        match (name.as_str(), body) {
            ("$match", Bson::Document(filter)) => walk_filter(filter, tenant, Site::Pipeline, &path)?,
            ("$facet", Bson::Document(facets)) => {
                for (facet, sub) in facets {
                    let Bson::Array(sub) = sub else { return Err(Refusal::MalformedStage { index }) };
                    let sub: Vec<Document> = sub
                        .iter()
                        .map(|s| s.as_document().cloned().ok_or(Refusal::MalformedStage { index }))
                        .collect::<Result<_, _>>()?;
                    check_stages(&sub, tenant, &format!("{path}.{facet}"))?;
                }
            }
            _ => deep_stage_scan(body, &path)?,
        }
    }
    Ok(())
}

/// Inside any other stage: refuse JavaScript operators and any nested stage name that is
/// forbidden (defence in depth for expressions that embed pipelines).
fn deep_stage_scan(value: &Bson, at: &str) -> Result<(), Refusal> {
    match value {
        Bson::Document(doc) => doc.iter().try_for_each(|(k, v)| {
            let path = format!("{at}.{k}");
            if SERVER_SIDE_JS.contains(&k.as_str()) {
                return Err(Refusal::ServerSideJavaScript { operator: k.clone(), path });
            }
            if FORBIDDEN_STAGES.contains(&k.as_str()) {
                return Err(Refusal::ForbiddenStage { stage: k.clone(), path });
            }
            deep_stage_scan(v, &path)
        }),
        Bson::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, v)| deep_stage_scan(v, &format!("{at}.{i}")))
        }
        Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => {
            Err(Refusal::ServerSideJavaScript { operator: "JavaScript code".into(), path: at.into() })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    const T: &str = "tn_a";

    #[test]
    fn a_filter_naming_another_tenant_is_refused() {
        let err = check_filter(&doc! {"tenantId": "tn_b"}, T, Site::Filter).unwrap_err();
        assert!(matches!(err, Refusal::TenantMismatch { ref found, .. } if found == "tn_b"));
    }

    #[test]
    fn a_filter_naming_another_tenant_inside_or_is_refused() {
        let f = doc! {"$or": [{"name": "x"}, {"tenantId": "tn_b"}]};
        assert!(matches!(check_filter(&f, T, Site::Filter), Err(Refusal::TenantMismatch { .. })));
    }

    #[test]
    fn a_filter_naming_another_tenant_inside_nor_and_elem_match_is_refused() {
        let f = doc! {"$nor": [{"$and": [{"items": {"$elemMatch": {"tenantId": "tn_b"}}}]}]};
        assert!(matches!(check_filter(&f, T, Site::Filter), Err(Refusal::TenantMismatch { .. })));
    }

    #[test]
    fn an_operator_condition_on_tenant_id_is_refused() {
        for f in [
            doc! {"tenantId": {"$ne": T}},
            doc! {"tenantId": {"$in": [T, "tn_b"]}},
            doc! {"tenantId": {"$exists": true}},
            doc! {"tenantId": {"$regex": "."}},
        ] {
            assert_eq!(check_filter(&f, T, Site::Filter), Err(Refusal::TenantCondition { site: Site::Filter }));
        }
    }

    #[test]
    fn a_filter_on_the_scope_s_own_tenant_is_accepted() {
        assert_eq!(check_filter(&doc! {"tenantId": T, "name": {"$in": ["a"]}}, T, Site::Filter), Ok(()));
    }

    #[test]
    fn an_expression_on_tenant_id_is_refused() {
        let f = doc! {"$or": [{"$expr": {"$eq": ["$tenantId", "tn_b"]}}]};
        assert_eq!(check_filter(&f, T, Site::Filter), Err(Refusal::TenantCondition { site: Site::Filter }));
        let p = vec![doc! {"$match": {"$expr": {"$ne": ["$tenantId.x", 1]}}}];
        assert!(matches!(check_pipeline(&p, T), Err(Refusal::TenantCondition { .. })));
        assert_eq!(check_filter(&doc! {"$expr": {"$gt": ["$n", 1]}}, T, Site::Filter), Ok(()));
    }

    #[test]
    fn where_in_a_filter_is_refused_at_any_depth() {
        let f = doc! {"$and": [{"$or": [{"$where": "sleep(1000)"}]}]};
        assert!(matches!(check_filter(&f, T, Site::Filter), Err(Refusal::ServerSideJavaScript { .. })));
    }

    #[test]
    fn function_inside_expr_is_refused() {
        let f = doc! {"$expr": {"$function": {"body": "function(){return true}", "args": [], "lang": "js"}}};
        assert!(matches!(check_filter(&f, T, Site::Filter), Err(Refusal::ServerSideJavaScript { .. })));
    }

    #[test]
    fn a_document_naming_another_tenant_is_refused() {
        assert!(matches!(check_document(&doc! {"tenantId": "tn_b"}, T), Err(Refusal::TenantMismatch { .. })));
        assert!(matches!(check_document(&doc! {"tenantId": 5}, T), Err(Refusal::TenantCondition { .. })));
        assert_eq!(check_document(&doc! {"tenantId": T, "x": 1}, T), Ok(()));
    }

    #[test]
    fn every_update_operator_touching_tenant_id_is_refused() {
        for op in FIELD_UPDATE_OPERATORS {
            let u = doc! { op: {"tenantId": "tn_b"} };
            assert!(matches!(check_update(&u), Err(Refusal::TenantIdUpdate { .. })), "{op}");
        }
    }

    #[test]
    fn a_dotted_path_under_tenant_id_is_refused() {
        let u = doc! {"$set": {"tenantId.x": 1}};
        assert!(matches!(check_update(&u), Err(Refusal::TenantIdUpdate { .. })));
    }

    #[test]
    fn renaming_a_field_onto_tenant_id_is_refused() {
        let u = doc! {"$rename": {"name": "tenantId"}};
        assert!(matches!(check_update(&u), Err(Refusal::TenantIdUpdate { ref path, .. }) if path == "tenantId"));
    }

    #[test]
    fn a_replacement_document_is_refused() {
        assert_eq!(check_update(&doc! {"name": "x"}), Err(Refusal::ReplacementUpdate));
        assert_eq!(check_update(&doc! {"tenantId": "tn_b"}), Err(Refusal::ReplacementUpdate));
    }

    #[test]
    fn an_unknown_or_empty_update_is_refused() {
        assert!(matches!(check_update(&doc! {"$foo": {"a": 1}}), Err(Refusal::UnknownUpdateOperator(_))));
        assert_eq!(check_update(&doc! {}), Err(Refusal::EmptyUpdate));
    }

    #[test]
    fn managed_timestamps_cannot_be_updated() {
        let u = doc! {"$unset": {"createdAt": ""}};
        assert!(matches!(check_update(&u), Err(Refusal::ManagedFieldUpdate { .. })));
    }

    #[test]
    fn a_field_merely_starting_with_tenant_id_is_not_tenant_id() {
        assert_eq!(check_update(&doc! {"$set": {"tenantIdentity": 1}}), Ok(()));
    }

    #[test]
    fn each_forbidden_stage_is_refused_at_the_top() {
        for stage in FORBIDDEN_STAGES {
            let p = vec![doc! { stage: {} }];
            assert!(
                matches!(check_pipeline(&p, T), Err(Refusal::ForbiddenStage { stage: ref s, .. }) if s == stage),
                "{stage}"
            );
        }
    }

    #[test]
    fn a_forbidden_stage_inside_facet_is_refused() {
        let p = vec![doc! {"$facet": {"a": [{"$match": {}}], "b": [{"$lookup": {"from": "users"}}]}}];
        let err = check_pipeline(&p, T).unwrap_err();
        assert!(matches!(err, Refusal::ForbiddenStage { ref stage, ref path } if stage == "$lookup" && path.contains("$facet.b")));
    }

    #[test]
    fn a_forbidden_stage_inside_nested_facets_is_refused() {
        let p = vec![doc! {"$facet": {"a": [{"$facet": {"b": [{"$out": "x"}]}}]}}];
        assert!(matches!(check_pipeline(&p, T), Err(Refusal::ForbiddenStage { .. })));
    }

    #[test]
    fn an_unknown_stage_is_refused() {
        let p = vec![doc! {"$somethingNew": {}}];
        assert!(matches!(check_pipeline(&p, T), Err(Refusal::ForbiddenStage { .. })));
    }

    #[test]
    fn accumulator_inside_group_is_refused() {
        let p = vec![doc! {"$group": {"_id": null, "x": {"$accumulator": {"init": "function(){}"}}}}];
        assert!(matches!(check_pipeline(&p, T), Err(Refusal::ServerSideJavaScript { .. })));
    }

    #[test]
    fn a_match_stage_naming_another_tenant_is_refused() {
        let p = vec![doc! {"$match": {"$or": [{"tenantId": "tn_b"}]}}];
        assert!(matches!(check_pipeline(&p, T), Err(Refusal::TenantMismatch { site: Site::Pipeline, .. })));
    }

    #[test]
    fn a_stage_with_two_names_is_malformed() {
        let p = vec![doc! {"$match": {}, "$limit": 1}];
        assert_eq!(check_pipeline(&p, T), Err(Refusal::MalformedStage { index: 0 }));
    }

    #[test]
    fn a_harmless_pipeline_is_accepted() {
        let p = vec![
            doc! {"$match": {"status": "active"}},
            doc! {"$group": {"_id": "$status", "n": {"$sum": 1}}},
            doc! {"$sort": {"n": -1}},
            doc! {"$facet": {"top": [{"$limit": 1}]}},
        ];
        assert_eq!(check_pipeline(&p, T), Ok(()));
    }
}
