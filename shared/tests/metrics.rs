//! What the code writes is the catalog: every metric of `shared::metrics::METRICS`, recorded
//! through its emitter, comes out as an EMF document in the catalog's namespace with exactly
//! the catalog's name, dimensions and unit (template.yaml's alarms are checked against the
//! catalog in tools/local/tests/template.rs). Its own test binary: the recorder is global.

use serde_json::Value;
use shared::metrics::{self, METRICS, NAMESPACE};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[test]
fn every_emitter_writes_its_cataloged_metric() {
    metrics::init("test");
    metrics::request("/v1/webhooks/stripe", 503, Duration::from_millis(12));
    metrics::stripe_call(
        "CreateCheckoutSession",
        "unavailable",
        Duration::from_millis(80),
    );
    metrics::webhook_event("checkout.session.completed", "processed");
    metrics::credits_granted(5);
    metrics::credits_spent(2);
    metrics::idempotent_replay("/v1/credits/access");
    metrics::rate_limited("free");
    metrics::reconciler_drift(0);
    let mut out = Vec::new();
    metrics::flush_into(&mut out);
    let text = String::from_utf8(out).unwrap();

    // (name → (dimensions, unit)) as written.
    let mut written: BTreeMap<String, (BTreeSet<String>, String)> = BTreeMap::new();
    for line in text.lines() {
        let doc: Value = serde_json::from_str(line).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE, "{line}");
        let dimensions: BTreeSet<String> = directive["Dimensions"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        for d in &dimensions {
            assert!(doc[d].is_string(), "dimension {d} has its value: {line}");
        }
        assert_eq!(doc["Stage"], "test", "{line}");
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap().to_string();
            assert!(!doc[&name].is_null(), "{name} has a value: {line}");
            let unit = m["Unit"].as_str().unwrap_or("None").to_string();
            written.insert(name, (dimensions.clone(), unit));
        }
    }
    for m in METRICS {
        let (dimensions, unit) = written
            .get(m.name)
            .unwrap_or_else(|| panic!("{} was not written:\n{text}", m.name));
        let expected: BTreeSet<String> = m.dimensions.iter().map(|d| d.to_string()).collect();
        assert_eq!(dimensions, &expected, "{}", m.name);
        assert_eq!(unit, m.unit, "{}", m.name);
    }
    assert_eq!(
        written.len(),
        METRICS.len(),
        "nothing outside the catalog: {written:?}"
    );
    // The route and class values, as alarms name them.
    assert!(text.contains(r#""Route":"/v1/webhooks/stripe""#), "{text}");
    assert!(text.contains(r#""StatusClass":"5xx""#), "{text}");
}
