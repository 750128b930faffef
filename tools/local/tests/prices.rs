//! Prices by lookup key: what a function does at start when the account lacks one, and what
//! a changed amount does after `admin stripe-sync` (`shared::stripe::prices::sync`, the code
//! the command runs).

use axum::body::Body;
use devkit::TestApp;
use http::Request;
use reqwest::Method;
use serde_json::{Value, json};
use shared::catalog::{Tier, sellables};
use shared::clock::SystemClock;
use shared::stripe::StripeApi;
use shared::stripe::prices::{Change, sync};
use std::sync::Arc;
use tower::ServiceExt;

/// A new instance of the functions against the same engine and Stripe: a cold start.
async fn cold_start(app: &TestApp) -> anyhow::Result<shared::AppState> {
    devkit::local_state(
        app.state.store.client().clone(),
        app.stripe.base_url(),
        Arc::new(SystemClock),
    )
    .await
}

fn api(app: &TestApp) -> StripeApi {
    StripeApi::new(app.stripe.base_url(), shared::secrets::LOCAL_SECRET_KEY).unwrap()
}

#[tokio::test]
async fn a_function_whose_price_is_missing_fails_at_start_naming_its_lookup_key() {
    let app = TestApp::spawn(billing::router).await;
    // The report's price loses its lookup key, as in an account the sync never ran on.
    let report = app
        .state
        .prices
        .get()
        .await
        .unwrap()
        .id("billing_report_single")
        .unwrap()
        .to_string();
    let (status, price) = app
        .stripe_call(
            Method::POST,
            &format!("/v1/prices/{report}"),
            &[("lookup_key", "")],
        )
        .await;
    assert_eq!(status, 200, "{price}");

    let err = cold_start(&app)
        .await
        .expect_err("no start without a price");
    let message = format!("{err:#}");
    assert!(message.contains("`billing_report_single`"), "{message}");
    assert!(message.contains("admin stripe-sync"), "{message}");
    // Only the missing one is named.
    assert!(!message.contains("billing_pro_monthly"), "{message}");

    // The sync puts it back (a new price holding the key), and the next start succeeds.
    let report = sync(&api(&app), &sellables(), false).await.unwrap();
    assert!(
        report.changes.iter().any(|c| matches!(
            c,
            Change::CreatePrice { item, replaces: None } if item.lookup_key == "billing_report_single"
        )),
        "{:?}",
        report.changes
    );
    cold_start(&app)
        .await
        .expect("starts once the key resolves");
}

#[tokio::test]
async fn a_changed_amount_moves_the_lookup_key_to_a_new_price_that_the_next_checkout_uses() {
    let app = TestApp::spawn(billing::router).await;
    let old = app
        .state
        .prices
        .get()
        .await
        .unwrap()
        .tier(Tier::Pro)
        .unwrap()
        .to_string();

    // The catalog's Pro price goes from $99 to $89.
    let mut catalog = sellables();
    let pro = catalog
        .iter_mut()
        .find(|s| s.lookup_key == "billing_pro_monthly")
        .unwrap();
    pro.unit_amount_cents = 8900;
    let dry = sync(&api(&app), &catalog, true).await.unwrap();
    assert_eq!(
        dry.changes.len(),
        2,
        "a new price and the portal: {:?}",
        dry.changes
    );
    let report = sync(&api(&app), &catalog, false).await.unwrap();
    assert!(
        matches!(
            &report.changes[..],
            [Change::CreatePrice { replaces: Some(r), .. }, Change::ConfigurePortal { .. }] if r.id == old
        ),
        "{:?}",
        report.changes
    );
    let again = sync(&api(&app), &catalog, false).await.unwrap();
    assert_eq!(again.changes, vec![], "a second run changes nothing");

    // Stripe: the key is on the new price; the old one keeps its subscribers and its tier.
    let (_, list) = app
        .stripe_call(
            Method::GET,
            "/v1/prices",
            &[("lookup_keys[]", "billing_pro_monthly")],
        )
        .await;
    let new = list["data"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(list["data"][0]["unit_amount"], 8900);
    let (_, previous) = app
        .stripe_call(Method::GET, &format!("/v1/prices/{old}"), &[])
        .await;
    assert_eq!(previous["lookup_key"], Value::Null);
    assert_eq!(previous["active"], true);
    assert_eq!(
        shared::stripe::prices::tier_of(previous["metadata"]["catalog_key"].as_str(), None),
        Some(Tier::Pro)
    );

    // The next cold start resolves the new id; its checkout sells the new price.
    let state = cold_start(&app).await.unwrap();
    assert_eq!(
        state.prices.get().await.unwrap().tier(Tier::Pro),
        Some(new.as_str())
    );
    let response = billing::router(state)
        .oneshot(
            Request::post("/v1/billing/checkout")
                .header("authorization", format!("Bearer {}", app.api_key))
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({
                        "tier": "pro",
                        "success_url": "https://example.com/ok",
                        "cancel_url": "https://example.com/cancel"
                    })
                    .to_string(),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    let session = body["session_id"].as_str().unwrap();
    let (_, items) = app
        .stripe_call(
            Method::GET,
            &format!("/v1/checkout/sessions/{session}/line_items"),
            &[],
        )
        .await;
    assert_eq!(items["data"][0]["price"]["id"], new.as_str(), "{items}");
    assert_eq!(items["data"][0]["amount_total"], 8900, "{items}");

    // The portal lets customers switch to the new price, not the old one.
    let (_, portals) = app
        .stripe_call(
            Method::GET,
            "/v1/billing_portal/configurations",
            &[("is_default", "true")],
        )
        .await;
    let allowed = portals["data"][0]["features"]["subscription_update"]["products"].to_string();
    assert!(
        allowed.contains(&new) && !allowed.contains(&old),
        "{allowed}"
    );
}
