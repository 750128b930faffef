//! template.yaml and the code must agree: every route the routers serve is declared on the
//! function that serves it, every declared route is served, the tables match shared's
//! definitions, and the alarms and the dashboard name the metrics shared::metrics emits, with
//! their dimensions, and cover every function and table.

use axum::body::Body;
use axum::http::Request;
use serde_norway::Value;
use shared::http::Unrouted;
use shared::metrics::{METRICS, NAMESPACE};
use shared::tables::TABLES;
use std::collections::{BTreeMap, BTreeSet};
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
    let (state, _stripe) = devkit::state_with_emulator(engine.client()).await.unwrap();
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

// --- Alarms and the dashboard ---------------------------------------------------------------

/// The README section every alarm's description points to.
const RUNBOOK: &str = "Alarms and what to do when each fires";

/// `!Ref <name>`: the name. serde_norway keeps the tag (`Value::Tagged`), and its `as_str`
/// looks through it, so `!Ref Stage` and the string `Stage` would read alike there.
fn ref_of(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
        _ => None,
    }
}

/// A plain string, untagged.
fn literal(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

fn ids_of_type(t: &Value, resource_type: &str) -> BTreeSet<String> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(resource_type))
        .map(|(id, _)| id)
        .collect()
}

/// (logical id, Properties) of every alarm.
fn alarms(t: &Value) -> Vec<(String, &Value)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .map(|(id, r)| (id, &r["Properties"]))
        .collect()
}

/// One metric an alarm watches: at its top level, or a `MetricStat` of its `Metrics`.
struct Watched<'a> {
    alarm: String,
    namespace: String,
    name: String,
    /// (Name, Value), in the template's order.
    dimensions: Vec<(String, &'a Value)>,
}

fn watched_metric<'a>(alarm: &str, metric: &'a Value) -> Watched<'a> {
    Watched {
        alarm: alarm.to_string(),
        namespace: str_of(&metric["Namespace"]),
        name: str_of(&metric["MetricName"]),
        dimensions: metric["Dimensions"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|d| (str_of(&d["Name"]), &d["Value"]))
            .collect(),
    }
}

/// Every metric every alarm watches.
fn watched(t: &Value) -> Vec<Watched<'_>> {
    let mut all = Vec::new();
    for (alarm, p) in alarms(t) {
        if !p["MetricName"].is_null() {
            all.push(watched_metric(&alarm, p));
        }
        for m in p["Metrics"].as_sequence().into_iter().flatten() {
            if !m["MetricStat"].is_null() {
                all.push(watched_metric(&alarm, &m["MetricStat"]["Metric"]));
            }
        }
    }
    all
}

/// The value of an alarm's top-level dimension `name`.
fn dimension<'a>(p: &'a Value, name: &str) -> Option<&'a Value> {
    p["Dimensions"]
        .as_sequence()?
        .iter()
        .find(|d| d["Name"].as_str() == Some(name))
        .map(|d| &d["Value"])
}

/// An alarm on a BillingApi metric names one the code emits (CloudWatch matches a metric by
/// its exact set of dimensions, so a missing or extra one watches nothing), on the stack's own
/// Stage, with fixed values the code writes.
#[test]
fn billing_api_alarms_watch_cataloged_metrics_with_their_dimensions() {
    let t = template();
    let routes: BTreeSet<String> = template_routes(&t)
        .into_iter()
        .map(|(_, _, path)| path)
        .collect();
    let mut checked = 0;
    for w in watched(&t) {
        let at = format!("{}: {} {}", w.alarm, w.namespace, w.name);
        assert!(
            [NAMESPACE, "AWS/Lambda", "AWS/DynamoDB"].contains(&w.namespace.as_str()),
            "{at}: an unexpected namespace"
        );
        if w.namespace != NAMESPACE {
            continue;
        }
        let def = METRICS
            .iter()
            .find(|m| m.name == w.name)
            .unwrap_or_else(|| panic!("{at}: not in shared::metrics::METRICS"));
        let names: Vec<&str> = w.dimensions.iter().map(|(n, _)| n.as_str()).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{at}: a dimension named twice");
        let expected: BTreeSet<&str> = def.dimensions.iter().copied().collect();
        assert_eq!(unique, expected, "{at}: the dimensions the code writes");
        for (name, value) in &w.dimensions {
            match name.as_str() {
                "Stage" => assert_eq!(
                    ref_of(value),
                    Some("Stage"),
                    "{at}: Stage must be !Ref Stage"
                ),
                "Route" => {
                    let route = literal(value)
                        .unwrap_or_else(|| panic!("{at}: Route must be a path, got {value:?}"));
                    assert!(
                        routes.contains(route),
                        "{at}: no function declares the route {route}"
                    );
                }
                "StatusClass" => assert!(
                    matches!(literal(value), Some("2xx" | "4xx" | "5xx")),
                    "{at}: StatusClass {value:?}"
                ),
                other => assert!(
                    literal(value).is_some_and(|v| !v.is_empty()),
                    "{at}: {other} must be a fixed value, got {value:?}"
                ),
            }
        }
        checked += 1;
    }
    assert!(checked > 0, "no alarm watches a {NAMESPACE} metric");
}

/// Lambda's Errors and Throttles are watched for every function, and every Lambda alarm
/// watches a function of this template.
#[test]
fn every_function_has_an_errors_and_a_throttles_alarm() {
    let t = template();
    let functions = ids_of_type(&t, "AWS::Serverless::Function");
    assert!(!functions.is_empty());
    let mut seen = BTreeSet::new();
    for w in watched(&t) {
        if w.namespace != "AWS/Lambda" {
            continue;
        }
        let names: Vec<&str> = w.dimensions.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["FunctionName"], "{}: {}", w.alarm, w.name);
        let function = ref_of(w.dimensions[0].1)
            .unwrap_or_else(|| panic!("{}: FunctionName must be !Ref <function>", w.alarm));
        assert!(
            functions.contains(function),
            "{}: {function} is not a function of the template",
            w.alarm
        );
        seen.insert((function.to_string(), w.name.clone()));
    }
    for f in &functions {
        for metric in ["Errors", "Throttles"] {
            assert!(
                seen.contains(&(f.clone(), metric.to_string())),
                "{f}: no {metric} alarm"
            );
        }
    }
}

/// Every table has one alarm over its read and write throttle events and its indexes'.
#[test]
fn every_table_has_a_throttling_alarm() {
    let t = template();
    let tables: BTreeMap<String, Vec<String>> = resources(&t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::DynamoDB::Table"))
        .map(|(id, r)| {
            let indexes: Vec<String> = r["Properties"]["GlobalSecondaryIndexes"]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|g| str_of(&g["IndexName"]))
                .collect();
            (id, indexes)
        })
        .collect();
    assert!(!tables.is_empty());
    // (alarm, table) -> the (metric, index) pairs it watches.
    type Seen = BTreeSet<(String, Option<String>)>;
    let mut by_alarm: BTreeMap<(String, String), Seen> = BTreeMap::new();
    for w in watched(&t) {
        if w.namespace != "AWS/DynamoDB" {
            continue;
        }
        let mut table = None;
        let mut index = None;
        for (name, value) in &w.dimensions {
            match name.as_str() {
                "TableName" => table = ref_of(value),
                "GlobalSecondaryIndexName" => index = literal(value).map(str::to_string),
                other => panic!("{}: unexpected dimension {other}", w.alarm),
            }
        }
        let table = table.unwrap_or_else(|| panic!("{}: TableName must be !Ref <table>", w.alarm));
        let indexes = tables
            .get(table)
            .unwrap_or_else(|| panic!("{}: {table} is not a table of the template", w.alarm));
        if let Some(i) = &index {
            assert!(indexes.contains(i), "{}: {table} has no index {i}", w.alarm);
        }
        by_alarm
            .entry((w.alarm.clone(), table.to_string()))
            .or_default()
            .insert((w.name.clone(), index));
    }
    for (table, indexes) in &tables {
        let mut wanted = Seen::new();
        for metric in ["ReadThrottleEvents", "WriteThrottleEvents"] {
            wanted.insert((metric.to_string(), None));
            for i in indexes {
                wanted.insert((metric.to_string(), Some(i.clone())));
            }
        }
        assert!(
            by_alarm
                .iter()
                .any(|((_, of), seen)| of == table && seen.is_superset(&wanted)),
            "{table}: no alarm watches all of {wanted:?}"
        );
    }
}

/// Every alarm mails the topic when it fires and when it clears, treats a period without
/// data as OK, and points to its runbook in the README; a metric-math alarm returns one
/// expression, over every metric it fetches. The email subscription exists only when
/// AlarmEmail is set.
#[test]
fn every_alarm_notifies_the_topic() {
    let t = template();
    assert_eq!(
        ids_of_type(&t, "AWS::SNS::Topic"),
        BTreeSet::from(["AlarmTopic".to_string()])
    );
    let readme_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(readme_path).expect("README.md is readable");
    assert!(
        readme.contains(&format!("\n### {RUNBOOK}\n")),
        "README.md has no section {RUNBOOK}"
    );

    let all = alarms(&t);
    assert!(!all.is_empty(), "no alarms");
    for (id, p) in &all {
        for key in ["AlarmActions", "OKActions"] {
            let targets: Vec<Option<&str>> = p[key]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(ref_of)
                .collect();
            assert!(
                targets.contains(&Some("AlarmTopic")),
                "{id}: {key} must hold !Ref AlarmTopic"
            );
        }
        assert_eq!(p["TreatMissingData"].as_str(), Some("notBreaching"), "{id}");
        let description = p["AlarmDescription"].as_str().unwrap_or_default();
        let section = description
            .split_once(&format!("\"{RUNBOOK}\", "))
            .map(|(_, rest)| rest.trim_end_matches('.'))
            .unwrap_or_else(|| panic!("{id}: the description names no runbook: {description}"));
        assert!(
            readme.contains(&format!("\n#### {section}\n")),
            "{id}: README.md has no runbook entry `#### {section}`"
        );

        let metrics: &[Value] = p["Metrics"]
            .as_sequence()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if metrics.is_empty() {
            assert!(!p["MetricName"].is_null(), "{id} watches nothing");
            continue;
        }
        assert!(
            p["MetricName"].is_null(),
            "{id}: MetricName and Metrics both"
        );
        for m in metrics {
            assert!(
                m["ReturnData"].as_bool().is_some(),
                "{id}: every Metrics entry says ReturnData (an omitted one means true)"
            );
        }
        let returned: Vec<&Value> = metrics
            .iter()
            .filter(|m| m["ReturnData"].as_bool() == Some(true))
            .collect();
        assert_eq!(returned.len(), 1, "{id}: one entry returns data");
        let expression = returned[0]["Expression"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: the entry returning data is an expression"));
        let tokens: BTreeSet<&str> = expression
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        for m in metrics.iter().filter(|m| !m["MetricStat"].is_null()) {
            let metric_id = str_of(&m["Id"]);
            assert!(
                tokens.contains(metric_id.as_str()),
                "{id}: {metric_id} is fetched but not in `{expression}`"
            );
        }
    }

    assert_eq!(t["Parameters"]["AlarmEmail"]["Default"].as_str(), Some(""));
    let equals = match &t["Conditions"]["HasAlarmEmail"] {
        Value::Tagged(not) if not.tag == "Not" => &not.value[0],
        other => panic!("HasAlarmEmail: {other:?}"),
    };
    match equals {
        Value::Tagged(eq) if eq.tag == "Equals" => {
            assert_eq!(ref_of(&eq.value[0]), Some("AlarmEmail"));
            assert_eq!(literal(&eq.value[1]), Some(""));
        }
        other => panic!("HasAlarmEmail: {other:?}"),
    }
    let subscriptions: Vec<_> = resources(&t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::SNS::Subscription"))
        .collect();
    assert_eq!(subscriptions.len(), 1, "one email subscription");
    let (id, s) = &subscriptions[0];
    assert_eq!(s["Condition"].as_str(), Some("HasAlarmEmail"), "{id}");
    let p = &s["Properties"];
    assert_eq!(p["Protocol"].as_str(), Some("email"), "{id}");
    assert_eq!(ref_of(&p["TopicArn"]), Some("AlarmTopic"), "{id}");
    assert_eq!(ref_of(&p["Endpoint"]), Some("AlarmEmail"), "{id}");
}

/// The Properties of the top-level alarm on the BillingApi metric `metric` whose dimensions
/// include the fixed values `fixed`.
fn billing_api_alarm<'a>(
    all: &[(String, &'a Value)],
    metric: &str,
    fixed: &[(&str, &str)],
) -> &'a Value {
    all.iter()
        .map(|(_, p)| *p)
        .find(|p| {
            p["Namespace"].as_str() == Some(NAMESPACE)
                && p["MetricName"].as_str() == Some(metric)
                && fixed
                    .iter()
                    .all(|(name, value)| dimension(p, name).and_then(literal) == Some(*value))
        })
        .unwrap_or_else(|| panic!("no alarm on {metric} {fixed:?}"))
}

/// A failed webhook delivery pages at once (Stripe retries for 3 days: the earlier, the more
/// of that window is left), and so does a reconciler run that found drift.
#[test]
fn webhook_5xx_and_reconciler_drift_are_alarmed() {
    let t = template();
    let all = alarms(&t);

    let webhook = billing_api_alarm(
        &all,
        "Requests",
        &[("Route", "/v1/webhooks/stripe"), ("StatusClass", "5xx")],
    );
    assert_eq!(webhook["Statistic"].as_str(), Some("Sum"));
    assert_eq!(webhook["Period"].as_u64(), Some(300));
    assert_eq!(webhook["EvaluationPeriods"].as_u64(), Some(1));
    assert_eq!(webhook["Threshold"].as_u64(), Some(1));
    assert_eq!(
        webhook["ComparisonOperator"].as_str(),
        Some("GreaterThanOrEqualToThreshold")
    );

    let drift = billing_api_alarm(&all, "ReconcilerDrift", &[]);
    assert_eq!(drift["Statistic"].as_str(), Some("Maximum"));
    assert_eq!(drift["Period"].as_u64(), Some(3600));
    assert_eq!(drift["Threshold"].as_u64(), Some(0));
    assert_eq!(
        drift["ComparisonOperator"].as_str(),
        Some("GreaterThanThreshold")
    );
}

/// The schema's dimension names (`{BillingApi,Stage,Route}` gives Stage and Route) and the
/// MetricName of a `SEARCH('...', stat, period)` expression limited to the stack's Stage.
fn search_terms(expression: &str) -> (Vec<&str>, &str) {
    let query = expression
        .strip_prefix("SEARCH('")
        .and_then(|rest| rest.split_once('\''))
        .map(|(query, _)| query)
        .unwrap_or_else(|| panic!("`{expression}`: not SEARCH('...', ...)"));
    let schema: Vec<&str> = query
        .strip_prefix('{')
        .and_then(|rest| rest.split_once('}'))
        .map(|(schema, _)| schema.split(',').map(str::trim).collect::<Vec<&str>>())
        .unwrap_or_else(|| panic!("`{expression}`: no {{Namespace,Dimension,...}} schema"));
    assert_eq!(
        schema.first().copied(),
        Some(NAMESPACE),
        "`{expression}`: the schema's namespace"
    );
    let metric = query
        .split_once("MetricName=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(metric, _)| metric)
        .unwrap_or_else(|| panic!("`{expression}`: no MetricName=\"...\""));
    assert!(
        query.contains("Stage=\"${Stage}\""),
        "`{expression}`: not limited to the stack's Stage"
    );
    (schema[1..].to_vec(), metric)
}

/// `X` of a `${X}` that `!Sub` replaces.
fn substituted(s: &str) -> Option<&str> {
    s.strip_prefix("${").and_then(|rest| rest.strip_suffix('}'))
}

/// The dashboard's body is JSON (its `${...}` stay inside strings for `!Sub`); it shows every
/// metric of the catalog with exactly its dimensions on the stack's Stage, every function's
/// errors, throttles and duration, every table's throttles, and every alarm.
#[test]
fn the_dashboard_shows_every_metric_function_table_and_alarm() {
    let t = template();
    let dashboards: Vec<_> = resources(&t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::CloudWatch::Dashboard"))
        .collect();
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let p = &dashboards[0].1["Properties"];
    match &p["DashboardName"] {
        Value::Tagged(sub) if sub.tag == "Sub" => {
            assert_eq!(
                sub.value.as_str(),
                Some("${AWS::StackName}"),
                "the README says so"
            )
        }
        other => panic!("DashboardName: {other:?}"),
    }
    let body = match &p["DashboardBody"] {
        Value::Tagged(sub) if sub.tag == "Sub" => str_of(&sub.value),
        other => panic!("DashboardBody must be !Sub: {other:?}"),
    };
    let body: serde_json::Value = serde_json::from_str(&body).expect("the dashboard body is JSON");

    let functions = ids_of_type(&t, "AWS::Serverless::Function");
    let tables = ids_of_type(&t, "AWS::DynamoDB::Table");
    let mut shown = BTreeSet::new();
    let mut lambda = BTreeSet::new();
    let mut dynamodb = BTreeSet::new();
    let mut listed_alarms = BTreeSet::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        let props = &widget["properties"];
        match widget["type"].as_str() {
            Some("alarm") => {
                for arn in props["alarms"].as_array().expect("alarms") {
                    let arn = arn.as_str().expect("an alarm ARN");
                    let id = substituted(arn)
                        .and_then(|s| s.strip_suffix(".Arn"))
                        .map(str::to_string)
                        .unwrap_or_else(|| panic!("{arn}: not ${{<Alarm>.Arn}}"));
                    listed_alarms.insert(id);
                }
            }
            Some("metric") => {
                let title = props["title"].as_str().unwrap_or_default();
                assert_eq!(props["region"].as_str(), Some("${AWS::Region}"), "{title}");
                for row in props["metrics"].as_array().expect("metrics") {
                    let row = row.as_array().expect("a metrics row is an array");
                    if let Some(expression) = row.first().and_then(|e| e["expression"].as_str()) {
                        let (dimensions, metric) = search_terms(expression);
                        let def = METRICS
                            .iter()
                            .find(|m| m.name == metric)
                            .unwrap_or_else(|| panic!("{title}: {metric} is not cataloged"));
                        let names: BTreeSet<&str> = dimensions.iter().copied().collect();
                        let expected: BTreeSet<&str> = def.dimensions.iter().copied().collect();
                        assert_eq!(names, expected, "{title}: {metric}'s dimensions");
                        shown.insert(metric.to_string());
                        continue;
                    }
                    // [namespace, metric, name, value, ..., {options}], no "." shorthand.
                    let strings: Vec<&str> =
                        row.iter().map_while(serde_json::Value::as_str).collect();
                    let [namespace, metric, dims @ ..] = strings.as_slice() else {
                        panic!("{title}: {row:?}");
                    };
                    let pairs = dims.chunks_exact(2);
                    assert!(pairs.remainder().is_empty(), "{title}: {row:?}");
                    let dims: Vec<(&str, &str)> = pairs.map(|pair| (pair[0], pair[1])).collect();
                    match *namespace {
                        NAMESPACE => {
                            let def = METRICS
                                .iter()
                                .find(|m| m.name == *metric)
                                .unwrap_or_else(|| panic!("{title}: {metric} is not cataloged"));
                            let names: BTreeSet<&str> = dims.iter().map(|(n, _)| *n).collect();
                            let expected: BTreeSet<&str> = def.dimensions.iter().copied().collect();
                            assert_eq!(names, expected, "{title}: {metric}'s dimensions");
                            assert_eq!(names.len(), dims.len(), "{title}: {row:?}");
                            for (name, value) in &dims {
                                if *name == "Stage" {
                                    assert_eq!(*value, "${Stage}", "{title}: {metric}");
                                }
                            }
                            shown.insert(metric.to_string());
                        }
                        "AWS/Lambda" => {
                            let [("FunctionName", value)] = dims.as_slice() else {
                                panic!("{title}: {row:?}");
                            };
                            let function = substituted(value)
                                .filter(|id| functions.contains(*id))
                                .map(str::to_string)
                                .unwrap_or_else(|| panic!("{title}: {value} is no function"));
                            lambda.insert((function, metric.to_string()));
                        }
                        "AWS/DynamoDB" => {
                            let Some(("TableName", value)) = dims.first().copied() else {
                                panic!("{title}: {row:?}");
                            };
                            let table = substituted(value)
                                .filter(|id| tables.contains(*id))
                                .map(str::to_string)
                                .unwrap_or_else(|| panic!("{title}: {value} is no table"));
                            if dims.len() == 1 {
                                dynamodb.insert((table, metric.to_string()));
                            }
                        }
                        other => panic!("{title}: unexpected namespace {other}"),
                    }
                }
            }
            Some("text") => {}
            other => panic!("unexpected widget type {other:?}"),
        }
    }

    for m in METRICS {
        assert!(
            shown.contains(m.name),
            "the dashboard does not show {}",
            m.name
        );
    }
    for f in &functions {
        for metric in ["Errors", "Throttles", "Duration"] {
            assert!(
                lambda.contains(&(f.clone(), metric.to_string())),
                "the dashboard does not show {f}'s {metric}"
            );
        }
    }
    for table in &tables {
        for metric in ["ReadThrottleEvents", "WriteThrottleEvents"] {
            assert!(
                dynamodb.contains(&(table.clone(), metric.to_string())),
                "the dashboard does not show {table}'s {metric}"
            );
        }
    }
    let alarm_ids: BTreeSet<String> = alarms(&t).into_iter().map(|(id, _)| id).collect();
    assert_eq!(listed_alarms, alarm_ids, "the dashboard's alarm widget");
}
