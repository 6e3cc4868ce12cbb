//! The static checks behind every scoped operation (docs/ARCHITECTURE.md §5).
//!
//! They run before anything reaches the server and refuse, never rewrite: a request that could
//! read, write or name another tenant's data is a bug in the caller, and a loud error finds it
//! sooner than a silently "fixed" query would.
//!
//! What each check refuses:
//!
//! - A filter ([`check_filter`], and the body of every `$match` stage of a pipeline):
//!   - a key `tenantId` or `tenantId.<x>`, at any depth, whose value is anything but the scope's
//!     own id as a plain string (another id, an operator such as `$ne` or `$in`, a document);
//!   - `$where`, `$function`, `$accumulator` and JavaScript code values, at any depth;
//!   - inside `$expr`, at any depth, every route to tenantId that can be seen without running the
//!     expression: the field paths `$tenantId` and `$tenantId.<x>`; a variable path whose first
//!     field is tenantId (`$$ROOT.tenantId`, `$$CURRENT.tenantId`, and `$$<var>.tenantId` for any
//!     variable, since `$let`, `$map` and `$filter` can bind one to a document), with any deeper
//!     path; a bare `$$ROOT` or `$$CURRENT`, which hands the whole document, tenantId included,
//!     to the condition; `$getField` naming tenantId (`{$getField: "tenantId"}`,
//!     `{field: "tenantId"}`, `{field: {$literal: "tenantId"}}`) or computing its field name (a
//!     field path, an operator), since a computed name may turn out to be tenantId.
//! - A document to insert ([`check_document`]): a top-level tenantId that is not the scope's own
//!   id as a plain string; JavaScript code values at any depth.
//! - An update ([`check_update`]): an empty update, a replacement document, an operator outside
//!   the known field operators, any path whose first field is tenantId or a managed timestamp
//!   (the target of `$rename` included), and JavaScript code values.
//! - A pipeline ([`check_pipeline`]), stage by stage, and so inside `$facet` sub-pipelines at any
//!   depth:
//!   - a stage not on the allow-list; a forbidden stage name nested in another stage's body;
//!     `$where`, `$function`, `$accumulator` and JavaScript code values;
//!   - in `$match`, everything a filter refuses (above), the bare `$$ROOT` / `$$CURRENT` in its
//!     `$expr` included;
//!   - in every other stage, reading tenantId by the routes listed for `$expr`, except the bare
//!     `$$ROOT` / `$$CURRENT`: a stage such as `{$group: {_id: null, docs: {$push: "$$ROOT"}}}`
//!     only carries documents the scope has already confined, and sets no condition;
//!   - writing tenantId into the documents a stage emits: a `$set` / `$addFields` key `tenantId`
//!     or `tenantId.<x>`; a `$project` of tenantId to anything but an inclusion or exclusion flag
//!     (0, 1, true, false); a `$group` or `$facet` output named tenantId, and likewise in the
//!     `output` of `$bucket`, `$bucketAuto` and `$setWindowFields`; `$count`, `$unwind`'s
//!     `includeArrayIndex` or `$densify`'s `field` naming tenantId; a `tenantId` key anywhere in
//!     the new root of `$replaceRoot` / `$replaceWith` (a document literal, or one inside
//!     `$mergeObjects`, `$literal`, `$cond`); `$setField` naming tenantId or computing its name.
//!     `$unset` of tenantId and a `$project` excluding it only remove it, and are accepted.
//! - Everywhere: a document or array nested more than [`MAX_DEPTH`] levels deep. Each walker
//!   refuses it before descending further, so hostile nesting cannot exhaust the stack.
//!
//! The checks judge what a request names, not what values hold when it runs. Outside `$match` a
//! bare `$$ROOT` may copy the whole document into a field, whose tenantId a later stage can then
//! read under that field's name; and a new root taken from a field (`{$replaceWith: "$sub"}`) or
//! built from keys held in data (`$arrayToObject`) carries whatever keys that data has. Neither
//! reaches beyond the tenant: `Scoped::aggregate` puts a `$match` on the tenant before every
//! pipeline, and stages that read other collections or write anywhere are refused.
//!
//! Services never take client-chosen `_id`s: an insert or upsert with an `_id` that exists in
//! another tenant would answer "duplicate" and so reveal that the id exists. Ids are generated
//! server-side (`ObjectId::new`) before a write. That is the services' rule: the guard does not
//! look at `_id`, and the scope only fills one in when a document has none.

use mongodb::bson::{Bson, Document};

/// The field that carries the tenant on every tenant-scoped document.
pub const TENANT_FIELD: &str = "tenantId";
/// Timestamps the scope stamps itself; callers may not write them.
pub const MANAGED_FIELDS: [&str; 2] = ["createdAt", "updatedAt"];
/// How deeply documents and arrays may nest, as MongoDB's own limit: the outermost document is
/// level 1 and each Document or Array inside adds one. Deeper input is refused, never walked, so
/// that a hostile request cannot overflow the stack of the recursive checks and abort the process.
pub const MAX_DEPTH: usize = 100;

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
    #[error(
        "the pipeline refers to tenantId (at {path}); a stage may not read it by field path, \
         variable path or $getField, nor compute a field name that could be it"
    )]
    TenantReference { path: String },
    #[error("aggregation stage {stage} writes tenantId into its output (at {path})")]
    TenantIdInPipeline { stage: String, path: String },
    #[error("{site} nests documents or arrays more than {limit} levels deep")]
    TooDeep { site: Site, limit: usize },
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

/// Refuses a Document or Array at nesting level `depth` (the outermost document is level 1) that
/// lies deeper than [`MAX_DEPTH`]. Every recursive walker below calls it before it looks inside a
/// container and passes `depth + 1` to the children, so no input can make the recursion, and
/// with it the stack, grow past [`MAX_DEPTH`] levels.
fn within_limit(depth: usize, site: Site) -> Result<(), Refusal> {
    if depth > MAX_DEPTH {
        Err(Refusal::TooDeep { site, limit: MAX_DEPTH })
    } else {
        Ok(())
    }
}

/// Checks a filter: tenantId may appear only as the scope's own id, as a plain string, at any
/// depth; `$expr` may not reach tenantId by any route the module documentation lists; server-side
/// JavaScript is refused at any depth, and so is nesting deeper than [`MAX_DEPTH`].
pub fn check_filter(filter: &Document, tenant: &str, site: Site) -> Result<(), Refusal> {
    walk_filter(filter, tenant, site, "", 1)
}

fn walk_filter(doc: &Document, tenant: &str, site: Site, at: &str, depth: usize) -> Result<(), Refusal> {
    within_limit(depth, site)?;
    for (key, value) in doc {
        let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
        if SERVER_SIDE_JS.contains(&key.as_str()) {
            return Err(Refusal::ServerSideJavaScript { operator: key.clone(), path });
        }
        // An expression that reads tenantId, or the whole document, is a condition on the
        // tenant by another route.
        if key == "$expr" && expression_reference(value, WholeDocument::Refused, site, &path, depth + 1)?.is_some() {
            return Err(Refusal::TenantCondition { site });
        }
        if is_path_of(key, TENANT_FIELD) {
            match value {
                Bson::String(found) if found == tenant => {}
                Bson::String(found) => return Err(Refusal::TenantMismatch { site, found: found.clone(), scope: tenant.to_owned() }),
                _ => return Err(Refusal::TenantCondition { site }),
            }
        }
        walk_value(value, tenant, site, &path, depth + 1)?;
    }
    Ok(())
}

fn walk_value(value: &Bson, tenant: &str, site: Site, at: &str, depth: usize) -> Result<(), Refusal> {
    match value {
        Bson::Document(doc) => walk_filter(doc, tenant, site, at, depth),
        Bson::Array(items) => {
            within_limit(depth, site)?;
            items.iter().enumerate().try_for_each(|(i, item)| walk_value(item, tenant, site, &format!("{at}.{i}"), depth + 1))
        }
        Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => {
            Err(Refusal::ServerSideJavaScript { operator: "JavaScript code".into(), path: at.into() })
        }
        _ => Ok(()),
    }
}

/// Whether a bare `$$ROOT` / `$$CURRENT` counts as reaching tenantId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WholeDocument {
    /// In a condition (a filter's or a `$match` stage's `$expr`): the whole document includes
    /// tenantId, so a condition on it is a condition on the tenant.
    Refused,
    /// In a reshaping stage: `{$push: "$$ROOT"}` only carries documents the scope has already
    /// confined to the tenant.
    Allowed,
}

/// Where an aggregation expression reaches tenantId, if it does, by a route that can be seen
/// without running it: an expression string (see [`string_reaches_tenant`]) or a `$getField`
/// whose field name is, or may be, tenantId. Returns the path of the first such route.
fn expression_reference(value: &Bson, whole: WholeDocument, site: Site, at: &str, depth: usize) -> Result<Option<String>, Refusal> {
    match value {
        Bson::String(s) => Ok(string_reaches_tenant(s, whole).then(|| at.to_owned())),
        Bson::Document(doc) => {
            within_limit(depth, site)?;
            for (key, v) in doc {
                let path = format!("{at}.{key}");
                if key == "$getField" && field_argument_may_name_tenant(v) {
                    return Ok(Some(path));
                }
                if let Some(found) = expression_reference(v, whole, site, &path, depth + 1)? {
                    return Ok(Some(found));
                }
            }
            Ok(None)
        }
        Bson::Array(items) => {
            within_limit(depth, site)?;
            for (i, v) in items.iter().enumerate() {
                if let Some(found) = expression_reference(v, whole, site, &format!("{at}.{i}"), depth + 1)? {
                    return Ok(Some(found));
                }
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// Whether an expression string reaches tenantId: the field path `$tenantId[.x]`; a variable path
/// `$$var.tenantId[.x]` for any variable, `$$ROOT` and `$$CURRENT` as much as one that `$let`,
/// `$map` or `$filter` bound to a document; and, where the whole document is refused, a bare
/// `$$ROOT` or `$$CURRENT`. A string without a leading `$` is a constant and reaches nothing.
fn string_reaches_tenant(s: &str, whole: WholeDocument) -> bool {
    if let Some(variable) = s.strip_prefix("$$") {
        match variable.split_once('.') {
            Some((_, field)) => is_path_of(field, TENANT_FIELD),
            None => whole == WholeDocument::Refused && (variable == "ROOT" || variable == "CURRENT"),
        }
    } else {
        s.strip_prefix('$').is_some_and(|field| is_path_of(field, TENANT_FIELD))
    }
}

/// Whether the argument of `$getField` or `$setField` names tenantId, or computes its field name
/// so that it might: the shorthand `{$getField: "tenantId"}`, `{field: "tenantId", …}`, a name
/// given as `{$literal: "tenantId"}`, and any name that is not a constant string (a field path
/// such as `"$name"`, an operator such as `$concat`), since the guard cannot know what it will be.
fn field_argument_may_name_tenant(arg: &Bson) -> bool {
    let name = match arg {
        Bson::Document(spec) => spec.get("field").unwrap_or(arg),
        _ => arg,
    };
    match name {
        Bson::String(s) if !s.starts_with('$') => is_path_of(s, TENANT_FIELD),
        Bson::Document(d) => match (d.len(), d.get("$literal")) {
            (1, Some(Bson::String(s))) => is_path_of(s, TENANT_FIELD),
            _ => true,
        },
        _ => true,
    }
}

/// Checks a document to insert: a top-level tenantId must be the scope's own (it is then
/// harmless); JavaScript values are refused, and so is nesting deeper than [`MAX_DEPTH`].
pub fn check_document(doc: &Document, tenant: &str) -> Result<(), Refusal> {
    if let Some(value) = doc.get(TENANT_FIELD) {
        match value {
            Bson::String(found) if found == tenant => {}
            Bson::String(found) => {
                return Err(Refusal::TenantMismatch { site: Site::Document, found: found.clone(), scope: tenant.to_owned() })
            }
            _ => return Err(Refusal::TenantCondition { site: Site::Document }),
        }
    }
    // The document is level 1, so its values are level 2.
    doc.iter().try_for_each(|(k, v)| no_javascript(v, k, Site::Document, 2))
}

fn no_javascript(value: &Bson, at: &str, site: Site, depth: usize) -> Result<(), Refusal> {
    match value {
        Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => {
            Err(Refusal::ServerSideJavaScript { operator: "JavaScript code".into(), path: at.into() })
        }
        Bson::Document(d) => {
            within_limit(depth, site)?;
            d.iter().try_for_each(|(k, v)| no_javascript(v, &format!("{at}.{k}"), site, depth + 1))
        }
        Bson::Array(a) => {
            within_limit(depth, site)?;
            a.iter().enumerate().try_for_each(|(i, v)| no_javascript(v, &format!("{at}.{i}"), site, depth + 1))
        }
        _ => Ok(()),
    }
}

/// Checks an update document: operators only, from a known list, none touching tenantId or the
/// managed timestamps, by any path, including as the target of `$rename`; no JavaScript values,
/// and no nesting deeper than [`MAX_DEPTH`].
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
                    return Err(Refusal::ManagedFieldUpdate { operator: operator.clone(), path: p.to_owned() });
                }
            }
            // The update is level 1, an operator's fields level 2, their values level 3.
            no_javascript(value, path, Site::Update, 3)?;
        }
    }
    Ok(())
}

/// Checks an aggregation pipeline: each stage from the allow-list, at any depth (inside `$facet`
/// too); no server-side JavaScript; `$match` stages follow the filter rules; other stages may not
/// read tenantId or write it into their output; no nesting deeper than [`MAX_DEPTH`]. Each stage
/// document is level 1; a `$facet` adds its own document and each sub-pipeline array on top.
pub fn check_pipeline(pipeline: &[Document], tenant: &str) -> Result<(), Refusal> {
    let stages: Vec<&Document> = pipeline.iter().collect();
    check_stages(&stages, tenant, "pipeline", 1)
}

/// `depth` is the level of the stage documents themselves. Sub-pipelines are borrowed, never
/// cloned: a clone would itself recurse through the whole, possibly hostile, nesting.
fn check_stages(stages: &[&Document], tenant: &str, at: &str, depth: usize) -> Result<(), Refusal> {
    within_limit(depth, Site::Pipeline)?;
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
        check_stage_writes(name, body, &path, depth + 1)?;
        match (name.as_str(), body) {
            ("$match", Bson::Document(filter)) => walk_filter(filter, tenant, Site::Pipeline, &path, depth + 1)?,
            ("$facet", Bson::Document(facets)) => {
                within_limit(depth + 1, Site::Pipeline)?;
                for (facet, sub) in facets {
                    let Bson::Array(sub) = sub else { return Err(Refusal::MalformedStage { index }) };
                    within_limit(depth + 2, Site::Pipeline)?;
                    let sub: Vec<&Document> =
                        sub.iter().map(|s| s.as_document().ok_or(Refusal::MalformedStage { index })).collect::<Result<_, _>>()?;
                    check_stages(&sub, tenant, &format!("{path}.{facet}"), depth + 3)?;
                }
            }
            _ => {
                deep_stage_scan(body, name, &path, depth + 1)?;
                if let Some(found) = expression_reference(body, WholeDocument::Allowed, Site::Pipeline, &path, depth + 1)? {
                    return Err(Refusal::TenantReference { path: found });
                }
            }
        }
    }
    Ok(())
}

/// Refuses a stage that writes tenantId into the documents it emits, by the field names each
/// stage writes: the callers of a pipeline read tenantId in its results as the tenant the
/// documents belong to. Only removing it (`$unset`, a `$project` exclusion) or keeping the
/// stored value (a `$project` inclusion) is harmless. `depth` is the level of `body`.
fn check_stage_writes(name: &str, body: &Bson, at: &str, depth: usize) -> Result<(), Refusal> {
    let found = match (name, body) {
        ("$set" | "$addFields" | "$group" | "$facet", Bson::Document(fields)) => tenant_key(fields).map(|key| format!("{at}.{key}")),
        ("$project", Bson::Document(fields)) => fields
            .iter()
            .find(|(key, value)| is_path_of(key.as_str(), TENANT_FIELD) && !is_projection_flag(value))
            .map(|(key, _)| format!("{at}.{key}")),
        ("$bucket" | "$bucketAuto" | "$setWindowFields", Bson::Document(spec)) => match spec.get("output") {
            Some(Bson::Document(output)) => tenant_key(output).map(|key| format!("{at}.output.{key}")),
            _ => None,
        },
        ("$count", Bson::String(field)) => is_path_of(field, TENANT_FIELD).then(|| at.to_owned()),
        ("$unwind", Bson::Document(spec)) => match spec.get("includeArrayIndex") {
            Some(Bson::String(field)) if is_path_of(field, TENANT_FIELD) => Some(format!("{at}.includeArrayIndex")),
            _ => None,
        },
        ("$densify", Bson::Document(spec)) => match spec.get("field") {
            Some(Bson::String(field)) if is_path_of(field, TENANT_FIELD) => Some(format!("{at}.field")),
            _ => None,
        },
        ("$replaceRoot", Bson::Document(spec)) => match spec.get("newRoot") {
            Some(root) => new_root_tenant_key(root, &format!("{at}.newRoot"), depth + 1)?,
            None => None,
        },
        ("$replaceWith", root) => new_root_tenant_key(root, at, depth)?,
        _ => None,
    };
    match found {
        Some(path) => Err(Refusal::TenantIdInPipeline { stage: name.to_owned(), path }),
        None => Ok(()),
    }
}

/// The first key of `fields` that is tenantId or a path under it.
fn tenant_key(fields: &Document) -> Option<&str> {
    fields.keys().map(String::as_str).find(|key| is_path_of(key, TENANT_FIELD))
}

/// `$project`'s inclusion and exclusion flags: they keep or drop the stored tenantId, never set
/// it. Any other value is an expression whose result would become tenantId.
fn is_projection_flag(value: &Bson) -> bool {
    match value {
        Bson::Boolean(_) => true,
        Bson::Int32(n) => *n == 0 || *n == 1,
        Bson::Int64(n) => *n == 0 || *n == 1,
        Bson::Double(n) => *n == 0.0 || *n == 1.0,
        _ => false,
    }
}

/// The new root of `$replaceRoot` / `$replaceWith` becomes the whole output document, so a
/// `tenantId` key anywhere in its expression is refused: at the top of a document literal, and
/// inside `$mergeObjects`, `$literal` or a `$cond` branch, whose documents may become the root.
/// Nested keys are refused too rather than reasoned about. Returns the path of the first one.
fn new_root_tenant_key(value: &Bson, at: &str, depth: usize) -> Result<Option<String>, Refusal> {
    match value {
        Bson::Document(doc) => {
            within_limit(depth, Site::Pipeline)?;
            for (key, v) in doc {
                let path = format!("{at}.{key}");
                if is_path_of(key, TENANT_FIELD) {
                    return Ok(Some(path));
                }
                if let Some(found) = new_root_tenant_key(v, &path, depth + 1)? {
                    return Ok(Some(found));
                }
            }
            Ok(None)
        }
        Bson::Array(items) => {
            within_limit(depth, Site::Pipeline)?;
            for (i, v) in items.iter().enumerate() {
                if let Some(found) = new_root_tenant_key(v, &format!("{at}.{i}"), depth + 1)? {
                    return Ok(Some(found));
                }
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// Inside any stage other than `$match` and `$facet`: refuse JavaScript operators and any nested
/// stage name that is forbidden (defence in depth for expressions that embed pipelines), and a
/// `$setField` that names tenantId or computes its name, since its result may become the output
/// document. `depth` is the level of `value`.
fn deep_stage_scan(value: &Bson, stage: &str, at: &str, depth: usize) -> Result<(), Refusal> {
    match value {
        Bson::Document(doc) => {
            within_limit(depth, Site::Pipeline)?;
            doc.iter().try_for_each(|(k, v)| {
                let path = format!("{at}.{k}");
                if SERVER_SIDE_JS.contains(&k.as_str()) {
                    return Err(Refusal::ServerSideJavaScript { operator: k.clone(), path });
                }
                if FORBIDDEN_STAGES.contains(&k.as_str()) {
                    return Err(Refusal::ForbiddenStage { stage: k.clone(), path });
                }
                if k == "$setField" && field_argument_may_name_tenant(v) {
                    return Err(Refusal::TenantIdInPipeline { stage: stage.to_owned(), path });
                }
                deep_stage_scan(v, stage, &path, depth + 1)
            })
        }
        Bson::Array(items) => {
            within_limit(depth, Site::Pipeline)?;
            items.iter().enumerate().try_for_each(|(i, v)| deep_stage_scan(v, stage, &format!("{at}.{i}"), depth + 1))
        }
        Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => {
            Err(Refusal::ServerSideJavaScript { operator: "JavaScript code".into(), path: at.into() })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
