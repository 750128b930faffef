//! template.yaml and the code must agree: every route the routers serve is declared on the
//! function that serves it, every declared route is served, and the tables match
//! shared's definitions.

use axum::body::Body;
use axum::http::Request;
use serde_norway::Value;
use shared::http::Unrouted;
use shared::tables::TABLES;
use std::collections::BTreeSet;
use tower::ServiceExt;

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
    let text = std::fs::read_to_string(path).expect("template.yaml is readable");
    serde_norway::from_str(&text).expect("template.yaml is YAML")
}

fn resources(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v))
        .collect()
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
}

/// (function binary, METHOD, path) for every HttpApi event of the template.
fn template_routes(t: &Value) -> BTreeSet<(String, String, String)> {
    let mut routes = BTreeSet::new();
    for (_, r) in resources(t) {
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = str_of(&r["Metadata"]["BuildProperties"]["Binary"]);
        for (_, event) in r["Properties"]["Events"].as_mapping().into_iter().flatten() {
            // The reconciler alone runs on a schedule; it serves no route.
            if binary == "reconciler" && event["Type"].as_str() == Some("Schedule") {
                continue;
            }
            assert_eq!(
                event["Type"].as_str(),
                Some("HttpApi"),
                "{binary}: only HttpApi events"
            );
            let p = &event["Properties"];
            routes.insert((
                binary.clone(),
                str_of(&p["Method"]).to_uppercase(),
                str_of(&p["Path"]),
            ));
        }
    }
    routes
}

fn code_routes() -> BTreeSet<(String, String, String)> {
    local::FUNCTIONS
        .iter()
        .flat_map(|f| {
            (f.api)()
                .routes()
                .iter()
                .map(|r| (f.name.to_string(), r.method.clone(), r.path.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_route_is_declared_on_its_function_and_back() {
    let declared = template_routes(&template());
    let served = code_routes();
    let undeclared: Vec<_> = served.difference(&declared).collect();
    let unserved: Vec<_> = declared.difference(&served).collect();
    assert!(
        undeclared.is_empty(),
        "served but not in template.yaml: {undeclared:?}"
    );
    assert!(
        unserved.is_empty(),
        "in template.yaml but not served: {unserved:?}"
    );
    assert!(!served.is_empty());
}

#[test]
fn every_function_is_built_with_cargo_lambda_for_arm64() {
    let t = template();
    assert_eq!(
        t["Globals"]["Function"]["Runtime"].as_str(),
        Some("provided.al2023")
    );
    assert_eq!(
        t["Globals"]["Function"]["Architectures"][0].as_str(),
        Some("arm64")
    );
    let mut binaries = BTreeSet::new();
    for (id, r) in resources(&t) {
        if r["Type"].as_str() == Some("AWS::Serverless::Function") {
            assert_eq!(
                r["Metadata"]["BuildMethod"].as_str(),
                Some("rust-cargolambda"),
                "{id}"
            );
            assert_eq!(r["Properties"]["CodeUri"].as_str(), Some("."), "{id}");
            binaries.insert(str_of(&r["Metadata"]["BuildProperties"]["Binary"]));
        }
    }
    // The HTTP functions, and the scheduled reconciler.
    let mut functions: BTreeSet<String> = local::FUNCTIONS
        .iter()
        .map(|f| f.name.to_string())
        .collect();
    functions.insert("reconciler".to_string());
    assert_eq!(binaries, functions);
}

/// The functions' timeout is what the Stripe budget of a request was sized for.
#[test]
fn the_function_timeout_leaves_room_after_the_stripe_budget() {
    let t = template();
    let timeout = t["Globals"]["Function"]["Timeout"].as_u64();
    assert_eq!(timeout, Some(shared::http::FUNCTION_TIMEOUT.as_secs()));
    assert!(
        shared::http::STRIPE_BUDGET + std::time::Duration::from_secs(5)
            <= shared::http::FUNCTION_TIMEOUT
    );
}

/// The reconciler runs on a schedule, one at a time, with the access it needs and no more.
#[test]
fn the_reconciler_is_scheduled_and_least_privileged() {
    let t = template();
    let (_, r) = resources(&t)
        .into_iter()
        .find(|(id, _)| id == "ReconcilerFunction")
        .expect("ReconcilerFunction");
    let p = &r["Properties"];
    assert_eq!(p["Events"]["Hourly"]["Type"].as_str(), Some("Schedule"));
    assert_eq!(p["ReservedConcurrentExecutions"].as_u64(), Some(1));
    let actions: BTreeSet<String> = p["Policies"][0]["Statement"]
        .as_sequence()
        .expect("statements")
        .iter()
        .flat_map(|st| match &st["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Sequence(list) => list.iter().map(str_of).collect(),
            _ => vec![],
        })
        .collect();
    for forbidden in ["dynamodb:DeleteItem", "dynamodb:*"] {
        assert!(!actions.contains(forbidden), "{forbidden}");
    }
    assert!(actions.contains("dynamodb:Scan"));
}

/// Each declared route really reaches a handler of the merged router (not its fallback),
/// so the recorded route table cannot drift from the router.
#[tokio::test]
async fn every_declared_route_reaches_a_handler() {
    let engine = devkit::Engine::memory().await.unwrap();
    let state = devkit::local_state(
        engine.client(),
        "http://127.0.0.1:9",
        std::sync::Arc::new(shared::clock::SystemClock),
    )
    .await
    .unwrap();
    let router = local::router(state);
    for (_, method, path) in template_routes(&template()) {
        let uri = path.replace("{id}", "sub_test");
        let request = Request::builder()
            .method(method.as_str())
            .uri(&uri)
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert!(
            response.extensions().get::<Unrouted>().is_none(),
            "{method} {path} is not routed"
        );
    }
    let miss = router
        .oneshot(
            Request::builder()
                .uri("/v1/nowhere")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(
        miss.extensions().get::<Unrouted>().is_some(),
        "the probe can tell a miss"
    );
}

fn attr_pairs(list: &Value, name_key: &str, value_key: &str) -> BTreeSet<(String, String)> {
    list.as_sequence()
        .into_iter()
        .flatten()
        .map(|a| (str_of(&a[name_key]), str_of(&a[value_key])))
        .collect()
}

fn key_schema(pk: &str, sk: Option<&str>) -> BTreeSet<(String, String)> {
    let mut s = BTreeSet::from([(pk.to_string(), "HASH".to_string())]);
    if let Some(sk) = sk {
        s.insert((sk.to_string(), "RANGE".to_string()));
    }
    s
}

#[test]
fn tables_match_the_rust_definitions() {
    let t = template();
    let declared: BTreeSet<String> = resources(&t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::DynamoDB::Table"))
        .map(|(id, _)| id)
        .collect();
    let defined: BTreeSet<String> = TABLES.iter().map(|d| d.logical_id.to_string()).collect();
    assert_eq!(declared, defined);

    for d in &TABLES {
        let p = &t["Resources"][d.logical_id]["Properties"];
        let id = d.logical_id;
        assert_eq!(p["BillingMode"].as_str(), Some("PAY_PER_REQUEST"), "{id}");
        assert_eq!(
            attr_pairs(&p["KeySchema"], "AttributeName", "KeyType"),
            key_schema(d.pk.name, d.sk.map(|k| k.name)),
            "{id}"
        );
        let attrs: BTreeSet<_> = d
            .key_attributes()
            .iter()
            .map(|a| (a.name.to_string(), a.kind.as_str().to_string()))
            .collect();
        assert_eq!(
            attr_pairs(&p["AttributeDefinitions"], "AttributeName", "AttributeType"),
            attrs,
            "{id}"
        );

        let gsis = p["GlobalSecondaryIndexes"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        assert_eq!(gsis.len(), d.gsis.len(), "{id} indexes");
        for g in d.gsis {
            let found = gsis
                .iter()
                .find(|x| x["IndexName"].as_str() == Some(g.name))
                .unwrap_or_else(|| panic!("{id}: no index {}", g.name));
            assert_eq!(
                attr_pairs(&found["KeySchema"], "AttributeName", "KeyType"),
                key_schema(g.pk.name, g.sk.map(|k| k.name)),
                "{id}.{}",
                g.name
            );
            assert_eq!(found["Projection"]["ProjectionType"].as_str(), Some("ALL"));
        }

        let ttl = &p["TimeToLiveSpecification"];
        match d.ttl_attribute {
            Some(attr) => {
                assert_eq!(ttl["AttributeName"].as_str(), Some(attr), "{id} TTL");
                assert_eq!(ttl["Enabled"].as_bool(), Some(true), "{id} TTL");
            }
            None => assert!(ttl.is_null(), "{id} has a TTL the code does not define"),
        }
        let pitr = p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
            .as_bool()
            .unwrap_or(false);
        assert_eq!(
            pitr, d.point_in_time_recovery,
            "{id} point-in-time recovery"
        );
    }
}

#[test]
fn every_table_name_reaches_every_function() {
    let t = template();
    let vars = &t["Globals"]["Function"]["Environment"]["Variables"];
    for d in &TABLES {
        assert!(
            !vars[d.env_var].is_null(),
            "{} is not passed to the functions",
            d.env_var
        );
    }
}
