//! The committed `openapi.json` is the document the code generates, and it documents exactly
//! the routes the functions serve.

use serde_json::Value;
use std::collections::BTreeSet;

fn generated() -> Value {
    serde_json::to_value(openapi::document()).expect("the document is JSON")
}

#[test]
fn the_committed_document_is_current() {
    let committed = std::fs::read_to_string(openapi::FILE).unwrap_or_default();
    let current = openapi::to_json(&openapi::document());
    assert!(
        committed == current,
        "openapi.json is not the document the code generates: run `make openapi` and commit it"
    );
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// (METHOD, path) of every operation, with the operation.
fn operations(doc: &Value) -> Vec<((String, String), Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push(((method.to_uppercase(), path.clone()), op.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_back() {
    let documented: BTreeSet<(String, String)> = operations(&generated())
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let served: BTreeSet<(String, String)> = local::api()
        .routes()
        .iter()
        .map(|r| (r.method.clone(), r.path.to_string()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented but not served: {unserved:?}"
    );
}

#[test]
fn it_is_openapi_3_1_with_the_api_key_on_every_route_but_two() {
    let doc = generated();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1."))
    );
    let scheme = &doc["components"]["securitySchemes"][shared::openapi::API_KEY];
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    let public = [
        ("POST", shared::stripe::WEBHOOK_PATH),
        ("GET", billing::OPENAPI_PATH),
    ];
    for ((method, path), op) in operations(&doc) {
        let key = (method.as_str(), path.as_str());
        let responses = op["responses"].as_object().expect("responses");
        if public.contains(&key) {
            assert!(op.get("security").is_none(), "{key:?} takes no API key");
            assert!(!responses.contains_key("401"), "{key:?}");
        } else {
            assert_eq!(
                op["security"],
                serde_json::json!([{shared::openapi::API_KEY: []}]),
                "{key:?}"
            );
            for status in ["401", "500"] {
                assert!(responses.contains_key(status), "{key:?} documents {status}");
            }
        }
        // Every POST, PUT and DELETE of an API key takes an Idempotency-Key, with its answers.
        if method != "GET" && !public.contains(&key) {
            let takes_key = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header");
            assert!(takes_key, "{key:?} documents Idempotency-Key");
            for status in ["409", "413", "422"] {
                assert!(responses.contains_key(status), "{key:?} documents {status}");
            }
        }
    }
}

#[test]
fn every_reference_resolves() {
    let doc = generated();
    fn walk(v: &Value, doc: &Value, missing: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let pointer = r.trim_start_matches('#');
                    if doc.pointer(pointer).is_none() {
                        missing.push(r.clone());
                    }
                }
                map.values().for_each(|v| walk(v, doc, missing));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, doc, missing)),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    walk(&doc, &doc, &mut missing);
    assert!(missing.is_empty(), "dangling references: {missing:?}");
}
