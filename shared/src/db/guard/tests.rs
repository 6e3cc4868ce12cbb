//! The guard's cases: what it refuses and what it lets through.

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
        assert!(matches!(check_pipeline(&p, T), Err(Refusal::ForbiddenStage { stage: ref s, .. }) if s == stage), "{stage}");
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

// --- $expr and stage expressions: every route to tenantId ---

/// Expressions that reach tenantId without naming `$tenantId` itself.
fn tenant_routes() -> Vec<Document> {
    vec![
        doc! {"$eq": ["$$ROOT.tenantId", "tn_b"]},
        doc! {"$eq": ["$$CURRENT.tenantId", "tn_b"]},
        doc! {"$eq": ["$$ROOT.tenantId.x", 1]},
        doc! {"$eq": [{"$getField": "tenantId"}, "tn_b"]},
        doc! {"$eq": [{"$getField": {"field": "tenantId", "input": "$$ROOT"}}, "tn_b"]},
        doc! {"$eq": [{"$getField": {"field": {"$literal": "tenantId"}}}, "tn_b"]},
        doc! {"$eq": [{"$getField": {"field": {"$concat": ["tenant", "Id"]}}}, "tn_b"]},
        doc! {"$let": {"vars": {"d": "$$CURRENT"}, "in": {"$eq": ["$$d.tenantId", "tn_b"]}}},
    ]
}

#[test]
fn every_route_to_tenant_id_in_a_filter_expression_is_refused() {
    for e in tenant_routes() {
        let f = doc! {"$or": [{"name": "x"}, {"$expr": e.clone()}]};
        assert_eq!(check_filter(&f, T, Site::Filter), Err(Refusal::TenantCondition { site: Site::Filter }), "{e}");
    }
}

#[test]
fn every_route_to_tenant_id_in_a_match_stage_expression_is_refused() {
    for e in tenant_routes() {
        let p = vec![doc! {"$match": {"$expr": e.clone()}}];
        assert_eq!(check_pipeline(&p, T), Err(Refusal::TenantCondition { site: Site::Pipeline }), "{e}");
    }
}

#[test]
fn the_whole_document_in_a_filter_expression_is_refused() {
    for whole in ["$$ROOT", "$$CURRENT"] {
        let e = doc! {"$gt": [{"$size": {"$objectToArray": whole}}, 3]};
        let f = doc! {"$expr": e.clone()};
        assert_eq!(check_filter(&f, T, Site::Filter), Err(Refusal::TenantCondition { site: Site::Filter }));
        let p = vec![doc! {"$match": {"$expr": e}}];
        assert_eq!(check_pipeline(&p, T), Err(Refusal::TenantCondition { site: Site::Pipeline }));
    }
}

#[test]
fn other_fields_reached_by_variable_or_get_field_are_accepted() {
    let f = doc! {"$expr": {"$and": [
        {"$eq": ["$$ROOT.name", "x"]},
        {"$gt": [{"$getField": "n"}, 1]},
        {"$gt": [{"$getField": {"field": {"$literal": "n"}}}, 1]},
        {"$lt": ["$$NOW", "$$CURRENT.expiresAt"]}
    ]}};
    assert_eq!(check_filter(&f, T, Site::Filter), Ok(()));
}

#[test]
fn pushing_the_whole_document_in_a_group_stage_is_accepted() {
    let p = vec![doc! {"$group": {"_id": null, "docs": {"$push": "$$ROOT"}}}];
    assert_eq!(check_pipeline(&p, T), Ok(()));
}

#[test]
fn an_expression_stage_reading_tenant_id_is_refused() {
    for stage in [
        doc! {"$project": {"t": "$tenantId"}},
        doc! {"$addFields": {"t": "$$ROOT.tenantId"}},
        doc! {"$set": {"t": {"$getField": {"field": "tenantId", "input": "$$ROOT"}}}},
        doc! {"$group": {"_id": "$$CURRENT.tenantId", "n": {"$sum": 1}}},
        doc! {"$replaceWith": {"t": {"$getField": "tenantId"}}},
        doc! {"$replaceRoot": {"newRoot": {"t": {"$getField": {"field": {"$literal": "tenantId"}}}}}},
        doc! {"$redact": {"$cond": [{"$eq": ["$tenantId", "tn_b"]}, "$$KEEP", "$$PRUNE"]}},
        doc! {"$bucket": {"groupBy": "$tenantId.x", "boundaries": [0, 1]}},
        doc! {"$sortByCount": "$tenantId"},
    ] {
        let p = vec![stage.clone()];
        assert!(matches!(check_pipeline(&p, T), Err(Refusal::TenantReference { .. })), "{stage}");
    }
    let p = vec![doc! {"$project": {"t": "$$ROOT.tenantId"}}];
    assert_eq!(check_pipeline(&p, T), Err(Refusal::TenantReference { path: "pipeline[0].$project.t".into() }));
}

// --- stages that write tenantId into their output ---

#[test]
fn a_stage_writing_tenant_id_is_refused() {
    for stage in [
        doc! {"$set": {"tenantId": "tn_b"}},
        doc! {"$addFields": {"tenantId": "tn_b"}},
        doc! {"$addFields": {"tenantId.x": 1}},
        doc! {"$project": {"tenantId": {"$literal": "tn_b"}}},
        doc! {"$project": {"name": 1, "tenantId": "$name"}},
        doc! {"$replaceWith": {"tenantId": "tn_b"}},
        doc! {"$replaceRoot": {"newRoot": {"name": "$name", "tenantId": "tn_b"}}},
        doc! {"$replaceWith": {"$mergeObjects": ["$$ROOT", {"tenantId": "tn_b"}]}},
        doc! {"$replaceWith": {"$setField": {"field": "tenantId", "input": "$$ROOT", "value": "tn_b"}}},
        doc! {"$group": {"_id": null, "tenantId": {"$first": "$name"}}},
        doc! {"$facet": {"tenantId": [{"$limit": 1}]}},
        doc! {"$count": "tenantId"},
        doc! {"$unwind": {"path": "$tags", "includeArrayIndex": "tenantId"}},
        doc! {"$bucket": {"groupBy": "$n", "boundaries": [0, 10], "output": {"tenantId": {"$sum": 1}}}},
        doc! {"$setWindowFields": {"sortBy": {"n": 1}, "output": {"tenantId": {"$sum": 1}}}},
        doc! {"$densify": {"field": "tenantId", "range": {"step": 1, "bounds": "full"}}},
    ] {
        let p = vec![stage.clone()];
        assert!(matches!(check_pipeline(&p, T), Err(Refusal::TenantIdInPipeline { .. })), "{stage}");
    }
    let p = vec![doc! {"$match": {}}, doc! {"$set": {"tenantId": "tn_b"}}];
    assert_eq!(check_pipeline(&p, T), Err(Refusal::TenantIdInPipeline { stage: "$set".into(), path: "pipeline[1].$set.tenantId".into() }));
}

#[test]
fn keeping_or_dropping_tenant_id_is_accepted() {
    for stage in [
        doc! {"$project": {"tenantId": 0}},
        doc! {"$project": {"tenantId": 1}},
        doc! {"$project": {"name": 1, "n": 1, "tenantId": true}},
        doc! {"$unset": "tenantId"},
        doc! {"$unset": ["tenantId", "extra"]},
        doc! {"$set": {"tenantIdentity": 1, "nested.tenantIdCopy": "x"}},
    ] {
        let p = vec![stage.clone()];
        assert_eq!(check_pipeline(&p, T), Ok(()), "{stage}");
    }
}

#[test]
fn the_same_forms_inside_a_nested_facet_are_refused() {
    let nested = |stage: Document| vec![doc! {"$facet": {"a": [{"$match": {}}, {"$facet": {"b": [stage]}}]}}];
    assert!(matches!(
        check_pipeline(&nested(doc! {"$set": {"tenantId": "tn_b"}}), T),
        Err(Refusal::TenantIdInPipeline { ref path, .. }) if path.contains("$facet.a[1].$facet.b[0]")
    ));
    assert!(matches!(check_pipeline(&nested(doc! {"$addFields": {"tenantId": "tn_b"}}), T), Err(Refusal::TenantIdInPipeline { .. })));
    assert!(matches!(
        check_pipeline(&nested(doc! {"$project": {"tenantId": {"$concat": ["tn_", "b"]}}}), T),
        Err(Refusal::TenantIdInPipeline { .. })
    ));
    assert!(matches!(check_pipeline(&nested(doc! {"$replaceWith": {"tenantId": "tn_b"}}), T), Err(Refusal::TenantIdInPipeline { .. })));
    assert!(matches!(check_pipeline(&nested(doc! {"$project": {"t": "$$ROOT.tenantId"}}), T), Err(Refusal::TenantReference { .. })));
    assert_eq!(
        check_pipeline(&nested(doc! {"$match": {"$expr": {"$eq": [{"$getField": "tenantId"}, "tn_b"]}}}), T),
        Err(Refusal::TenantCondition { site: Site::Pipeline })
    );
    assert_eq!(
        check_pipeline(&nested(doc! {"$match": {"$expr": {"$ne": ["$$ROOT", null]}}}), T),
        Err(Refusal::TenantCondition { site: Site::Pipeline })
    );
    assert_eq!(check_pipeline(&nested(doc! {"$project": {"tenantId": 0}}), T), Ok(()));
    assert_eq!(check_pipeline(&nested(doc! {"$unset": "tenantId"}), T), Ok(()));
}

// --- depth ---

/// `{"a": {"a": … {"a": 1}}}`, `levels` documents deep, built without recursion.
fn nested_fields(levels: usize) -> Document {
    let mut d = doc! {"a": 1};
    for _ in 1..levels {
        d = doc! {"a": d};
    }
    d
}

/// `[[ … [1] … ]]`, `levels` arrays deep, built without recursion (and never cloned, since a
/// clone would recurse).
fn nested_arrays(levels: usize) -> Bson {
    let mut v = Bson::Int32(1);
    for _ in 0..levels {
        v = Bson::Array(vec![v]);
    }
    v
}

#[test]
fn a_filter_nested_a_thousand_levels_is_refused_without_overflowing_the_stack() {
    let too_deep = Err(Refusal::TooDeep { site: Site::Filter, limit: MAX_DEPTH });
    assert_eq!(check_filter(&nested_fields(1_000), T, Site::Filter), too_deep);

    // {"$and": [{"$and": [ … {"n": 1} … ]}]}: each round is a document and an array.
    let mut f = doc! {"n": 1};
    for _ in 0..500 {
        f = doc! {"$and": [f]};
    }
    assert_eq!(check_filter(&f, T, Site::Filter), too_deep);

    let mut e = Bson::from("$n");
    for _ in 0..1_000 {
        e = Bson::Document(doc! {"$abs": e});
    }
    assert_eq!(check_filter(&doc! {"$expr": e}, T, Site::Filter), too_deep);
}

#[test]
fn a_filter_nested_fifty_levels_is_accepted() {
    assert_eq!(check_filter(&nested_fields(50), T, Site::Filter), Ok(()));
    let mut f = doc! {"n": 1};
    for _ in 0..24 {
        f = doc! {"$and": [f]};
    }
    assert_eq!(check_filter(&f, T, Site::Filter), Ok(()));
}

#[test]
fn nesting_is_accepted_up_to_max_depth_and_refused_one_level_beyond() {
    assert_eq!(check_filter(&nested_fields(MAX_DEPTH), T, Site::Filter), Ok(()));
    assert_eq!(
        check_filter(&nested_fields(MAX_DEPTH + 1), T, Site::Filter),
        Err(Refusal::TooDeep { site: Site::Filter, limit: MAX_DEPTH })
    );
    assert_eq!(check_document(&nested_fields(MAX_DEPTH), T), Ok(()));
    assert_eq!(check_document(&nested_fields(MAX_DEPTH + 1), T), Err(Refusal::TooDeep { site: Site::Document, limit: MAX_DEPTH }));
}

#[test]
fn a_pipeline_of_deeply_nested_facets_is_refused_without_overflowing_the_stack() {
    // Each round adds three levels: the stage, the $facet document and the sub-pipeline.
    let mut stage = doc! {"$limit": 1};
    for _ in 0..334 {
        stage = doc! {"$facet": {"f": [stage]}};
    }
    let too_deep = Err(Refusal::TooDeep { site: Site::Pipeline, limit: MAX_DEPTH });
    assert_eq!(check_pipeline(&[stage], T), too_deep);

    let p = vec![doc! {"$match": nested_fields(1_000)}];
    assert_eq!(check_pipeline(&p, T), too_deep);

    for stage in [doc! {"$project": {"x": nested_arrays(1_000)}}, doc! {"$replaceWith": {"x": nested_arrays(1_000)}}] {
        assert_eq!(check_pipeline(&[stage], T), too_deep);
    }
}

#[test]
fn a_deeply_nested_document_to_insert_is_refused() {
    let too_deep = Err(Refusal::TooDeep { site: Site::Document, limit: MAX_DEPTH });
    assert_eq!(check_document(&nested_fields(1_000), T), too_deep);
    assert_eq!(check_document(&doc! {"tenantId": T, "a": nested_arrays(1_000)}, T), too_deep);
}

#[test]
fn a_deeply_nested_update_value_is_refused() {
    let u = doc! {"$set": {"profile": nested_fields(1_000)}};
    assert_eq!(check_update(&u), Err(Refusal::TooDeep { site: Site::Update, limit: MAX_DEPTH }));
    assert_eq!(check_update(&doc! {"$set": {"profile": nested_fields(50)}}), Ok(()));
}
