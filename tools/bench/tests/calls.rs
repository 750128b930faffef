//! The DynamoDB calls of every endpoint `make bench` loads, exactly, on the bench's seeded
//! data with the API-key cache warm: a regression guard on round trips (counts, never
//! timings). Endpoints above the minimum their logic allows say so next to their count.

use bench::endpoints::ENDPOINTS;
use devkit::CallCounter;
use local::serve::{ServeOptions, Stack};
use std::collections::BTreeMap;

/// Each endpoint's calls for one request, by SDK operation.
const EXPECTED: [(&str, &[(&str, u64)]); 10] = [
    ("GET /v1/billing/tiers", &[]),
    ("GET /v1/credits/packs", &[]),
    // The plan, then its period's counter: the minimum (DESIGN.md: status is 2 reads).
    ("GET /v1/subscriptions", &[("GetItem", 2)]),
    // The balance and the plan in one BatchGetItem over both tables. The minimum.
    ("GET /v1/credits/balance", &[("BatchGetItem", 1)]),
    ("GET /v1/credits/history", &[("Query", 1)]),
    // The plan, the balance and the documents in one BatchGetItem; nothing new is unlocked,
    // so no transaction. The minimum.
    ("POST /v1/credits/access", &[("BatchGetItem", 1)]),
    // The plan, then both counters of its period and the balance in one BatchGetItem. The
    // minimum.
    ("GET /v1/usage", &[("BatchGetItem", 1), ("GetItem", 1)]),
    // A repeat: the analysis marker, read with the decision's facts, answers it. The minimum.
    ("POST /v1/usage/analyses", &[("BatchGetItem", 1)]),
    // The plan, then the counter's conditional update. The minimum.
    (
        "POST /v1/usage/chat-messages",
        &[("GetItem", 1), ("UpdateItem", 1)],
    ),
    // A duplicate delivery: the dedupe record answers it. The minimum.
    ("POST /v1/webhooks/stripe", &[("GetItem", 1)]),
];

#[tokio::test]
async fn each_endpoint_makes_exactly_its_dynamodb_calls() {
    let dir = tempfile::tempdir().unwrap();
    let counter = CallCounter::new();
    let stack = Stack::start(&ServeOptions {
        dynamodb_calls: Some(counter.clone()),
        ..ServeOptions::local(dir.path().to_path_buf(), 0, 0, 0)
    })
    .await
    .unwrap();
    let seeded = bench::seed::seed(&stack).await.unwrap();
    let http = reqwest::Client::new();

    let mut actual = Vec::new();
    for (i, endpoint) in ENDPOINTS.iter().enumerate() {
        let request = bench::warm::request(&stack.api_url, endpoint, &seeded);
        let first = bench::warm::count_calls(&http, &request, &counter)
            .await
            .unwrap();
        if i == 0 {
            // The key's first use reads it (the cache then saves that read) and leases the
            // window's rate-limit tokens (a new window leases again: a few per minute).
            assert_eq!(
                first,
                BTreeMap::from([("GetItem".to_string(), 1), ("UpdateItem".to_string(), 1)])
            );
        }
        let calls = bench::warm::count_warm_calls(&http, &request, &counter)
            .await
            .unwrap();
        let total: u64 = calls.values().sum();
        assert!(
            total >= u64::from(endpoint.min_calls),
            "{}: {total} calls, below its stated minimum {}: fix the minimum",
            endpoint.name(),
            endpoint.min_calls
        );
        actual.push((endpoint.name(), calls));
    }
    stack.stop().await.unwrap();

    let expected: Vec<(String, BTreeMap<String, u64>)> = EXPECTED
        .iter()
        .map(|(name, calls)| {
            (
                name.to_string(),
                calls.iter().map(|(op, n)| (op.to_string(), *n)).collect(),
            )
        })
        .collect();
    assert_eq!(actual, expected);
}
