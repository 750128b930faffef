//! The emulator's contract tests, over real HTTP with async-stripe as the client.

mod browser;
mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;
use stripe_emulator::EmulatorOptions;

#[tokio::test]
async fn auth_and_errors_are_stripe_shaped() {
    let e = emu().await;
    let resp = e.http.get(e.url("/v1/customers")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let resp = e
        .http
        .get(e.url("/v1/customers"))
        .bearer_auth("sk_live_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let (status, body) = e
        .send(reqwest::Method::GET, "/v1/customers/cus_missing", &[], None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "resource_missing");
    assert_eq!(body["error"]["param"], "id");

    let (status, body) = e
        .send(
            reqwest::Method::POST,
            "/v1/subscriptions",
            &[("items[0][price]", e.pro.as_str())],
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "parameter_missing");
    assert_eq!(body["error"]["param"], "customer");

    // Garbage never crashes the server.
    for raw in [
        "a[=1",
        "%%%",
        "items[0]=x&items[0][price]=y",
        "metadata[[]]=1",
    ] {
        let r = e
            .http
            .post(e.url("/v1/customers"))
            .bearer_auth(KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("Stripe-Version", "2026-09-30.endive")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert!(r.status().as_u16() < 500, "{raw}: {}", r.status());
    }

    // The async-stripe client sees Stripe's error type and code.
    let err = stripe_core::customer::RetrieveCustomer::new("cus_nope")
        .send(&e.client)
        .await
        .unwrap_err();
    match err {
        stripe::StripeError::Stripe(api, status) => {
            assert_eq!(status, 404);
            assert_eq!(
                api.code.map(|c| c.as_str().to_owned()).as_deref(),
                Some("resource_missing")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn catalog_is_seeded_from_shared_by_the_sync() {
    let e = emu().await;
    let price = stripe_product::price::RetrievePrice::new(e.pro.as_str())
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(
        price.unit_amount,
        Some(shared::catalog::TIERS[1].price_cents)
    );
    assert!(price.recurring.is_some());
    let list = stripe_product::price::ListPrice::new()
        .send(&e.client)
        .await
        .unwrap();
    // Every sellable item has one price, holding its lookup key (the sync's seeding).
    let keys: Vec<String> = list
        .data
        .iter()
        .filter_map(|p| p.lookup_key.clone())
        .collect();
    for key in shared::catalog::lookup_keys() {
        assert_eq!(keys.iter().filter(|k| *k == key).count(), 1, "{key}");
    }
    let report = stripe_product::price::RetrievePrice::new(e.report.as_str())
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(report.unit_amount, Some(2900));
    assert!(report.recurring.is_none());
    let product_id = match &price.product {
        stripe_types::Expandable::Id(id) => id.to_string(),
        stripe_types::Expandable::Object(p) => p.id.to_string(),
    };
    let product = stripe_product::product::RetrieveProduct::new(product_id)
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(product.name, "Pro");
    stripe_product::product::ListProduct::new()
        .send(&e.client)
        .await
        .unwrap();
}

#[tokio::test]
async fn customers_and_payment_methods_via_async_stripe() {
    let e = emu().await;
    let created = stripe_core::customer::CreateCustomer::new()
        .email("ana@example.com")
        .metadata([("tenant".to_owned(), "t-1".to_owned())])
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(created.email.as_deref(), Some("ana@example.com"));
    let cus = created.id.to_string();

    let pm = stripe_payment::payment_method::AttachPaymentMethod::new("pm_card_visa")
        .customer(cus.clone())
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(pm.card.as_ref().unwrap().last4, "4242");
    let pm_id = pm.id.to_string();
    stripe_payment::payment_method::RetrievePaymentMethod::new(pm_id.clone())
        .send(&e.client)
        .await
        .unwrap();

    let updated = e
        .post(
            &format!("/v1/customers/{cus}"),
            &[
                ("invoice_settings[default_payment_method]", &pm_id),
                ("metadata[plan]", "pro"),
                ("email", "new@example.com"),
            ],
        )
        .await;
    assert_eq!(
        updated["invoice_settings"]["default_payment_method"],
        pm_id.as_str()
    );
    let c = stripe_core::customer::RetrieveCustomer::new(cus.clone())
        .send(&e.client)
        .await
        .unwrap();
    match c {
        stripe_core::customer::RetrieveCustomerReturned::Customer(c) => {
            assert_eq!(c.email.as_deref(), Some("new@example.com"));
            let meta = c.metadata.unwrap();
            assert_eq!(meta.get("tenant").map(String::as_str), Some("t-1"));
            assert_eq!(meta.get("plan").map(String::as_str), Some("pro"));
        }
        other => panic!("unexpected {other:?}"),
    }

    // The always-declining card fails at attach, as on Stripe.
    let (status, body) = e
        .send(
            reqwest::Method::POST,
            "/v1/payment_methods/pm_card_chargeDeclined/attach",
            &[("customer", &cus)],
            None,
        )
        .await;
    assert_eq!(status, 402);
    assert_eq!(body["error"]["type"], "card_error");
    assert_eq!(body["error"]["code"], "card_declined");
    assert_eq!(body["error"]["message"], "Your card was declined.");

    // Raw card numbers work too.
    let pm = e
        .post(
            "/v1/payment_methods",
            &[
                ("type", "card"),
                ("card[number]", "4000002500003155"),
                ("card[exp_month]", "12"),
                ("card[exp_year]", "2030"),
            ],
        )
        .await;
    assert_eq!(pm["card"]["last4"], "3155");
    let (status, _) = e
        .send(
            reqwest::Method::POST,
            "/v1/payment_methods",
            &[
                ("type", "card"),
                ("card[number]", "1234"),
                ("card[exp_month]", "12"),
                ("card[exp_year]", "2030"),
            ],
            None,
        )
        .await;
    assert_eq!(status, 402);
}

#[tokio::test]
async fn idempotent_replays() {
    let e = emu().await;
    let (s1, a) = e
        .send(
            reqwest::Method::POST,
            "/v1/customers",
            &[("email", "a@example.com")],
            Some("key-1"),
        )
        .await;
    let (s2, b) = e
        .send(
            reqwest::Method::POST,
            "/v1/customers",
            &[("email", "a@example.com")],
            Some("key-1"),
        )
        .await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(a, b);
    let list = e.get("/v1/customers", &[]).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (s3, err) = e
        .send(
            reqwest::Method::POST,
            "/v1/customers",
            &[("email", "other@example.com")],
            Some("key-1"),
        )
        .await;
    assert_eq!(s3, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(err["error"]["code"], "idempotency_error");
    // Errors replay too.
    let (s4, _) = e
        .send(
            reqwest::Method::POST,
            "/v1/subscriptions",
            &[("customer", "cus_x"), ("items[0][price]", e.pro.as_str())],
            Some("key-2"),
        )
        .await;
    let (s5, _) = e
        .send(
            reqwest::Method::POST,
            "/v1/subscriptions",
            &[("customer", "cus_x"), ("items[0][price]", e.pro.as_str())],
            Some("key-2"),
        )
        .await;
    assert_eq!((s4, s5), (404, 404));
}

#[tokio::test]
async fn subscription_lifecycle_via_async_stripe() {
    let e = emu().await;
    let cus = e.customer_with_card("pm_card_visa").await;
    let sub = e.subscribe(&cus, e.pro.as_str()).await;
    assert_eq!(sub["status"], "active");
    assert!(
        sub.get("current_period_end").is_none(),
        "periods live on items"
    );
    let item = &sub["items"]["data"][0];
    assert!(
        item["current_period_end"].as_i64().unwrap()
            > item["current_period_start"].as_i64().unwrap()
    );
    let sub_id = sub["id"].as_str().unwrap().to_owned();

    let typed = stripe_billing::subscription::RetrieveSubscription::new(sub_id.clone())
        .expand(["latest_invoice".to_owned()])
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(typed.status, stripe_shared::SubscriptionStatus::Active);
    assert_eq!(typed.metadata.get("tenant").map(String::as_str), Some("t1"));
    let invoice = match typed.latest_invoice.unwrap() {
        stripe_types::Expandable::Object(i) => i,
        stripe_types::Expandable::Id(_) => panic!("not expanded"),
    };
    assert_eq!(invoice.amount_paid, 9900);
    assert_eq!(invoice.status, Some(stripe_shared::InvoiceStatus::Paid));

    let listed = stripe_billing::subscription::ListSubscription::new()
        .customer(cus.clone())
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(listed.data.len(), 1);
    let invoices = stripe_billing::invoice::ListInvoice::new()
        .customer(cus.clone())
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(invoices.data.len(), 1);
    let in_id = invoices.data[0].id.clone().unwrap();
    stripe_billing::invoice::RetrieveInvoice::new(in_id)
        .send(&e.client)
        .await
        .unwrap();

    let updated = stripe_billing::subscription::UpdateSubscription::new(sub_id.clone())
        .cancel_at_period_end(true)
        .send(&e.client)
        .await
        .unwrap();
    assert!(updated.cancel_at_period_end);
    let ev = e.events("customer.subscription.updated").await;
    assert_eq!(
        ev[0]["data"]["previous_attributes"]["cancel_at_period_end"],
        false
    );

    let canceled = stripe_billing::subscription::CancelSubscription::new(sub_id.clone())
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(canceled.status, stripe_shared::SubscriptionStatus::Canceled);
    assert_eq!(e.events("customer.subscription.deleted").await.len(), 1);
    let listed = stripe_billing::subscription::ListSubscription::new()
        .customer(cus)
        .send(&e.client)
        .await
        .unwrap();
    assert!(
        listed.data.is_empty(),
        "canceled subscriptions are not listed by default"
    );
}

#[tokio::test]
async fn declined_first_charge_is_a_card_error() {
    let e = emu().await;
    let cus = e.customer_with_card("pm_card_chargeCustomerFail").await;
    let (status, body) = e
        .send(
            reqwest::Method::POST,
            "/v1/subscriptions",
            &[("customer", &cus), ("items[0][price]", e.pro.as_str())],
            None,
        )
        .await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["type"], "card_error");
    assert_eq!(body["error"]["code"], "card_declined");
    assert_eq!(body["error"]["message"], "Your card was declined.");
    let subs = e
        .get(
            "/v1/subscriptions",
            &[("customer", &cus), ("status", "all")],
        )
        .await;
    assert_eq!(subs["data"][0]["status"], "incomplete");
    assert_eq!(e.events("invoice.payment_failed").await.len(), 1);

    // error_if_incomplete leaves nothing behind.
    let cus2 = e.customer_with_card("pm_card_chargeCustomerFail").await;
    let (status, _) = e
        .send(
            reqwest::Method::POST,
            "/v1/subscriptions",
            &[
                ("customer", &cus2),
                ("items[0][price]", e.pro.as_str()),
                ("payment_behavior", "error_if_incomplete"),
            ],
            None,
        )
        .await;
    assert_eq!(status, 402);
    let subs = e
        .get(
            "/v1/subscriptions",
            &[("customer", &cus2), ("status", "all")],
        )
        .await;
    assert!(subs["data"].as_array().unwrap().is_empty());

    // No card at all.
    let bare = e.post("/v1/customers", &[("email", "x@example.com")]).await;
    let (status, body) = e
        .send(
            reqwest::Method::POST,
            "/v1/subscriptions",
            &[
                ("customer", bare["id"].as_str().unwrap()),
                ("items[0][price]", e.pro.as_str()),
            ],
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no attached payment source")
    );
}

#[tokio::test]
async fn prorations_preview_and_upgrade() {
    let e = emu().await;
    let cus = e.customer_with_card("pm_card_visa").await;
    let sub = e.subscribe(&cus, e.pro.as_str()).await;
    let sub_id = sub["id"].as_str().unwrap();
    let si = sub["items"]["data"][0]["id"].as_str().unwrap();
    let start = sub["items"]["data"][0]["current_period_start"]
        .as_i64()
        .unwrap();
    let end = sub["items"]["data"][0]["current_period_end"]
        .as_i64()
        .unwrap();
    // Halfway through the period.
    e.advance((end - start) / 2).await;
    let preview = e
        .post(
            "/v1/invoices/create_preview",
            &[
                ("customer", &cus),
                ("subscription", sub_id),
                ("subscription_details[items][0][id]", si),
                (
                    "subscription_details[items][0][price]",
                    e.enterprise.as_str(),
                ),
                ("subscription_details[proration_behavior]", "always_invoice"),
            ],
        )
        .await;
    let typed: stripe_shared::Invoice =
        serde_json::from_value(preview.clone()).expect("preview is an Invoice");
    let lines = preview["lines"]["data"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    let credit = lines[0]["amount"].as_i64().unwrap();
    let charge = lines[1]["amount"].as_i64().unwrap();
    assert!((-4960..=-4940).contains(&credit), "credit {credit}");
    assert!((49_900..=50_000).contains(&charge), "charge {charge}");
    assert_eq!(typed.total, credit + charge);
    assert_eq!(
        lines[0]["parent"]["subscription_item_details"]["proration"],
        true
    );

    // The same via async-stripe's request type.
    let via_client = stripe_billing::invoice::CreatePreviewInvoice::new()
        .customer(cus.clone())
        .subscription(sub_id.to_owned())
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(via_client.total, 9900, "next renewal without changes");

    let upgraded = e
        .post(
            &format!("/v1/subscriptions/{sub_id}"),
            &[
                ("items[0][id]", si),
                ("items[0][price]", e.enterprise.as_str()),
                ("proration_behavior", "always_invoice"),
            ],
        )
        .await;
    assert_eq!(
        upgraded["items"]["data"][0]["price"]["id"],
        e.enterprise.as_str()
    );
    assert_eq!(upgraded["items"]["data"][0]["id"], si);
    let inv = e
        .get(
            &format!(
                "/v1/invoices/{}",
                upgraded["latest_invoice"].as_str().unwrap()
            ),
            &[],
        )
        .await;
    assert_eq!(inv["billing_reason"], "subscription_update");
    assert_eq!(inv["status"], "paid");
    assert_eq!(inv["amount_paid"].as_i64().unwrap(), credit + charge);

    // create_prorations defers the lines to the next renewal.
    let down = e
        .post(
            &format!("/v1/subscriptions/{sub_id}"),
            &[
                ("items[0][id]", si),
                ("items[0][price]", e.pro.as_str()),
                ("proration_behavior", "create_prorations"),
            ],
        )
        .await;
    assert_eq!(down["latest_invoice"], upgraded["latest_invoice"]);
    let next = e
        .post("/v1/invoices/create_preview", &[("subscription", sub_id)])
        .await;
    let next_lines = next["lines"]["data"].as_array().unwrap();
    assert_eq!(next_lines.len(), 3, "two prorations and the renewal");
    // none: no lines at all.
    e.post(
        &format!("/v1/subscriptions/{sub_id}"),
        &[
            ("items[0][id]", si),
            ("items[0][price]", e.enterprise.as_str()),
            ("proration_behavior", "none"),
        ],
    )
    .await;
    let next = e
        .post("/v1/invoices/create_preview", &[("subscription", sub_id)])
        .await;
    assert_eq!(next["lines"]["data"].as_array().unwrap().len(), 3);
    assert_eq!(next["lines"]["data"][2]["amount"], 99_900);
}

#[tokio::test]
async fn checkout_session_api_and_page() {
    let e = emu().await;
    let session = stripe_checkout::checkout_session::CreateCheckoutSession::new()
        .mode(stripe_shared::CheckoutSessionMode::Subscription)
        .success_url("http://shop.test/ok?session={CHECKOUT_SESSION_ID}")
        .cancel_url("http://shop.test/cancel")
        .customer_email("buyer@example.com")
        .client_reference_id("user-7")
        .line_items(vec![{
            let mut li = stripe_checkout::checkout_session::CreateCheckoutSessionLineItems::new();
            li.price = Some(e.pro.as_str().to_owned());
            li.quantity = Some(1);
            li
        }])
        .send(&e.client)
        .await
        .unwrap();
    let id = session.id.to_string();
    assert!(id.starts_with("cs_test_"));
    let url = session.url.clone().unwrap();
    assert_eq!(url, format!("{}/c/pay/{id}", e.handle.base_url()));

    let page = e.http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("4242 4242 4242 4242"));
    assert!(html.contains("$99.00"));
    assert!(html.contains("http://shop.test/cancel"));

    // Declined: the page again, session still open.
    let resp = e
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("card_number=4000+0000+0000+0002")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 402);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Your card was declined.")
    );
    let s = stripe_checkout::checkout_session::RetrieveCheckoutSession::new(id.clone())
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(s.status, Some(stripe_shared::CheckoutSessionStatus::Open));

    // Paid: 303 to success_url with the id filled in.
    let resp = e
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("card_number=4242+4242+4242+4242")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        format!("http://shop.test/ok?session={id}")
    );
    let s = e
        .get(
            &format!("/v1/checkout/sessions/{id}"),
            &[("expand[]", "line_items"), ("expand[]", "subscription")],
        )
        .await;
    let typed: stripe_shared::CheckoutSession = serde_json::from_value(s.clone()).unwrap();
    assert_eq!(
        typed.payment_status,
        stripe_shared::CheckoutSessionPaymentStatus::Paid
    );
    assert_eq!(s["status"], "complete");
    assert_eq!(s["client_reference_id"], "user-7");
    assert_eq!(s["subscription"]["status"], "active");
    assert_eq!(s["line_items"]["data"][0]["amount_total"], 9900);
    let cus = s["customer"].as_str().unwrap();
    let c = e.get(&format!("/v1/customers/{cus}"), &[]).await;
    assert_eq!(c["email"], "buyer@example.com");
    // As Stripe: the card Checkout collected is the subscription's default, attached to the
    // customer but not made the customer's invoice default.
    let card = s["subscription"]["default_payment_method"]
        .as_str()
        .unwrap();
    assert!(card.starts_with("pm_"), "{s}");
    assert!(
        c["invoice_settings"]["default_payment_method"].is_null(),
        "{c}"
    );
    let cards = e
        .get(&format!("/v1/customers/{cus}/payment_methods"), &[])
        .await;
    assert_eq!(cards["data"][0]["id"], card);
    assert_eq!(e.events("checkout.session.completed").await.len(), 1);

    // A completed session's page says so.
    let html = e.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("complete"));

    // Payment mode with payment_intent_data metadata, then expire another.
    let s2 = e
        .post(
            "/v1/checkout/sessions",
            &[
                ("mode", "payment"),
                ("line_items[0][price]", e.medium.as_str()),
                ("line_items[0][quantity]", "1"),
                ("success_url", "http://shop.test/ok"),
                ("customer", cus),
                ("metadata[pack]", "medium"),
                ("payment_intent_data[metadata][pack]", "medium"),
            ],
        )
        .await;
    let url2 = s2["url"].as_str().unwrap();
    let resp = e
        .http
        .post(url2)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("card_number=4242424242424242")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let s2 = e
        .get(
            &format!("/v1/checkout/sessions/{}", s2["id"].as_str().unwrap()),
            &[("expand[]", "payment_intent")],
        )
        .await;
    assert_eq!(s2["payment_intent"]["amount"], 1999);
    assert_eq!(s2["payment_intent"]["metadata"]["pack"], "medium");
    let pi_id = s2["payment_intent"]["id"].as_str().unwrap().to_owned();
    let pi = stripe_core::payment_intent::RetrievePaymentIntent::new(pi_id)
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(pi.status, stripe_shared::PaymentIntentStatus::Succeeded);

    let s3 = e
        .post(
            "/v1/checkout/sessions",
            &[
                ("mode", "payment"),
                ("line_items[0][price]", e.report.as_str()),
                ("line_items[0][quantity]", "1"),
                ("success_url", "http://shop.test/ok"),
            ],
        )
        .await;
    let id3 = s3["id"].as_str().unwrap().to_owned();
    let expired = stripe_checkout::checkout_session::ExpireCheckoutSession::new(id3.clone())
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(
        expired.status,
        Some(stripe_shared::CheckoutSessionStatus::Expired)
    );
    assert_eq!(e.events("checkout.session.expired").await.len(), 1);
    let resp = e
        .http
        .get(e.url(&format!("/c/pay/{id3}")))
        .send()
        .await
        .unwrap();
    assert!(resp.text().await.unwrap().contains("expired"));
}

#[tokio::test]
async fn three_d_secure_challenge() {
    let e = emu().await;
    let s = e
        .post(
            "/v1/checkout/sessions",
            &[
                ("mode", "subscription"),
                ("line_items[0][price]", e.pro.as_str()),
                ("line_items[0][quantity]", "1"),
                ("success_url", "http://shop.test/ok"),
                ("customer_email", "a@b.test"),
            ],
        )
        .await;
    let url = s["url"].as_str().unwrap();
    let form = |body: &'static str| {
        e.http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let html = form("card_number=4000002500003155")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Complete authentication"));
    let resp = e
        .http
        .post(format!("{url}/3ds"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("action=fail")
        .send()
        .await
        .unwrap();
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("unable to authenticate")
    );
    form("card_number=4000002500003155").send().await.unwrap();
    let resp = e
        .http
        .post(format!("{url}/3ds"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("action=complete")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let s = e
        .get(
            &format!("/v1/checkout/sessions/{}", s["id"].as_str().unwrap()),
            &[],
        )
        .await;
    assert_eq!(s["status"], "complete");
}

#[tokio::test]
async fn billing_portal() {
    let e = emu().await;
    let cus = e.customer_with_card("pm_card_visa").await;
    let sub = e.subscribe(&cus, e.pro.as_str()).await;
    let session = stripe_billing::billing_portal_session::CreateBillingPortalSession::new()
        .customer(cus.clone())
        .return_url("http://shop.test/account")
        .send(&e.client)
        .await
        .unwrap();
    let url = session.url.clone();
    assert!(url.starts_with(&format!("{}/p/session/bps_", e.handle.base_url())));
    let html = e.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains("Pro") && html.contains("4242") && html.contains("http://shop.test/account")
    );
    let sid = sub["id"].as_str().unwrap();
    let resp = e
        .http
        .post(format!("{url}/cancel"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("subscription={sid}"))
        .send()
        .await
        .unwrap();
    assert!(resp.text().await.unwrap().contains("will be canceled"));
    let s = e.get(&format!("/v1/subscriptions/{sid}"), &[]).await;
    assert_eq!(s["cancel_at_period_end"], true);
    e.http
        .post(format!("{url}/reactivate"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("subscription={sid}"))
        .send()
        .await
        .unwrap();
    let s = e.get(&format!("/v1/subscriptions/{sid}"), &[]).await;
    assert_eq!(s["cancel_at_period_end"], false);
    let html = e
        .http
        .post(format!("{url}/card"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("card_number=5555555555554444")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("4444"));
    // Creation emits one update (incomplete → active); the portal's cancel and renew two more.
    let updates = e.events("customer.subscription.updated").await;
    let toggles = updates
        .iter()
        .filter(|u| {
            u["data"]["previous_attributes"]
                .get("cancel_at_period_end")
                .is_some()
        })
        .count();
    assert_eq!(toggles, 2);
    assert_eq!(
        updates[0]["data"]["previous_attributes"]["cancel_at_period_end"],
        true
    );
}

#[tokio::test]
async fn events_paginate_newest_first_and_parse() {
    let e = emu().await;
    let cus = e.customer_with_card("pm_card_visa").await;
    e.subscribe(&cus, e.pro.as_str()).await;
    let all = e.get("/v1/events", &[("limit", "100")]).await;
    let events = all["data"].as_array().unwrap().clone();
    assert!(events.len() >= 8);
    let created: Vec<i64> = events
        .iter()
        .map(|e| e["created"].as_i64().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]));
    let page1 = e.get("/v1/events", &[("limit", "3")]).await;
    assert_eq!(page1["has_more"], true);
    let last = page1["data"][2]["id"].as_str().unwrap();
    let page2 = e
        .get("/v1/events", &[("limit", "3"), ("starting_after", last)])
        .await;
    assert_eq!(page2["data"][0]["id"], events[3]["id"]);
    let one = stripe_core::event::RetrieveEvent::new(events[0]["id"].as_str().unwrap())
        .send(&e.client)
        .await
        .unwrap();
    assert_eq!(one.id.as_str(), events[0]["id"].as_str().unwrap());
    stripe_core::event::ListEvent::new()
        .send(&e.client)
        .await
        .unwrap();
    for ev in &events {
        assert_event_parses(ev);
    }
}

/// Every emitted event parses with async-stripe's webhook code, into its typed object.
fn assert_event_parses(ev: &Value) {
    let payload = serde_json::to_string(ev).unwrap();
    let secret = "whsec_test";
    let header = stripe_webhook::Webhook::generate_test_header(&payload, secret, None);
    let parsed = stripe_webhook::Webhook::construct_event(&payload, &header, secret)
        .unwrap_or_else(|err| panic!("{} does not parse: {err:?}", ev["type"]));
    let kind = ev["type"].as_str().unwrap();
    let typed_kinds = [
        "customer.",
        "invoice.",
        "checkout.session.",
        "payment_intent.",
        "payment_method.",
    ];
    if typed_kinds.iter().any(|k| kind.starts_with(k)) {
        assert!(
            !matches!(parsed.data.object, stripe_webhook::EventObject::Unknown(_)),
            "{kind}: data.object did not parse into its type"
        );
    }
}

#[tokio::test]
async fn webhooks_are_signed_and_retried() {
    let r = receiver(1).await;
    let secret = "whsec_test_secret";
    let e = emu_with(EmulatorOptions {
        webhook_url: Some(r.url.clone()),
        webhook_secret: secret.into(),
        retry_base: Duration::from_millis(50),
        max_attempts: 3,
        ..Default::default()
    })
    .await;
    let c = e
        .post("/v1/customers", &[("email", "hook@example.com")])
        .await;
    let (sig, body) = wait_for(5, || r.received.lock().unwrap().first().cloned()).await;
    let event =
        stripe_webhook::Webhook::construct_event(&body, &sig, secret).expect("valid signature");
    assert_eq!(event.type_.as_str(), "customer.created");
    match event.data.object {
        stripe_webhook::EventObject::CustomerCreated(cus) => {
            assert_eq!(cus.id.as_str(), c["id"].as_str().unwrap())
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(stripe_webhook::Webhook::construct_event(&body, &sig, "whsec_wrong").is_err());
    let deliveries: Value = e
        .http
        .get(e.url("/_emulator/deliveries"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let attempts = deliveries["data"].as_array().unwrap();
    assert_eq!(attempts[0]["status_code"], 500);
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[1]["status_code"], 200);
    assert_eq!(attempts[1]["attempt"], 2);
    assert_eq!(attempts[1]["event_type"], "customer.created");

    // An API-created endpoint gets its own secret.
    let r2 = receiver(0).await;
    let we = e
        .post(
            "/v1/webhook_endpoints",
            &[("url", &r2.url), ("enabled_events[]", "customer.updated")],
        )
        .await;
    let secret2 = we["secret"].as_str().unwrap().to_owned();
    assert!(secret2.starts_with("whsec_"));
    e.post(
        &format!("/v1/customers/{}", c["id"].as_str().unwrap()),
        &[("name", "Jo")],
    )
    .await;
    let (sig, body) = wait_for(5, || r2.received.lock().unwrap().first().cloned()).await;
    let ev = stripe_webhook::Webhook::construct_event(&body, &sig, &secret2).unwrap();
    assert_eq!(ev.type_.as_str(), "customer.updated");
    assert!(ev.data.previous_attributes.is_some());
    assert_eq!(
        r2.received.lock().unwrap().len(),
        1,
        "only subscribed events"
    );
}

#[tokio::test]
async fn bounded_attempts_give_up() {
    let r = receiver(u32::MAX).await;
    let e = emu_with(EmulatorOptions {
        webhook_url: Some(r.url.clone()),
        retry_base: Duration::from_millis(20),
        max_attempts: 3,
        ..Default::default()
    })
    .await;
    e.post("/v1/customers", &[("email", "x@example.com")]).await;
    let attempts = wait_for(5, || {
        let d = e.handle.deliveries();
        d.iter().any(|a| a.attempt == 3).then_some(d)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let attempts_later = e.handle.deliveries();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts_later.len(), 3, "no fourth attempt");
    assert!(!attempts_later[2].will_retry);
    // A dead endpoint does not block the API.
    let dead = emu_with(EmulatorOptions {
        webhook_url: Some("http://127.0.0.1:9/x".into()),
        ..Default::default()
    })
    .await;
    dead.post("/v1/customers", &[("email", "y@example.com")])
        .await;
}

#[tokio::test]
async fn clock_renews_and_charges() {
    let e = emu().await;
    let cus = e.customer_with_card("pm_card_visa").await;
    let sub = e.subscribe(&cus, e.pro.as_str()).await;
    let sub_id = sub["id"].as_str().unwrap();
    let end = sub["items"]["data"][0]["current_period_end"]
        .as_i64()
        .unwrap();
    let before: Value = e
        .http
        .get(e.url("/_emulator/clock"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    e.advance(end - before["now"].as_i64().unwrap() + 60).await;
    let s = e.get(&format!("/v1/subscriptions/{sub_id}"), &[]).await;
    assert_eq!(s["status"], "active");
    assert_eq!(s["items"]["data"][0]["current_period_start"], end);
    let invoices = e.get("/v1/invoices", &[("subscription", sub_id)]).await;
    assert_eq!(invoices["data"].as_array().unwrap().len(), 2);
    assert_eq!(invoices["data"][0]["billing_reason"], "subscription_cycle");
    assert_eq!(invoices["data"][0]["status"], "paid");
    assert_eq!(e.events("invoice.paid").await.len(), 2);
    let in_id = invoices["data"][0]["id"].as_str().unwrap();
    stripe_billing::invoice::RetrieveInvoice::new(in_id.to_owned())
        .send(&e.client)
        .await
        .unwrap();
}

#[tokio::test]
async fn clock_dunning_ends_in_cancellation() {
    let e = emu().await;
    let cus = e.customer_with_card("pm_card_visa").await;
    let sub = e.subscribe(&cus, e.pro.as_str()).await;
    let sub_id = sub["id"].as_str().unwrap();
    // The card starts failing before renewal.
    let bad = e
        .post(
            "/v1/payment_methods/pm_card_chargeCustomerFail/attach",
            &[("customer", &cus)],
        )
        .await;
    e.post(
        &format!("/v1/customers/{cus}"),
        &[(
            "invoice_settings[default_payment_method]",
            bad["id"].as_str().unwrap(),
        )],
    )
    .await;
    let end = sub["items"]["data"][0]["current_period_end"]
        .as_i64()
        .unwrap();
    let now = e.handle.now();
    e.advance(end - now + 10).await;
    let s = e.get(&format!("/v1/subscriptions/{sub_id}"), &[]).await;
    assert_eq!(s["status"], "past_due");
    let inv = e
        .get(
            &format!("/v1/invoices/{}", s["latest_invoice"].as_str().unwrap()),
            &[],
        )
        .await;
    assert_eq!(inv["status"], "open");
    assert_eq!(inv["attempt_count"], 1);
    assert!(inv["next_payment_attempt"].as_i64().unwrap() >= end + 3 * 86_400);
    e.advance(3 * 86_400 + 10).await;
    let inv = e
        .get(
            &format!("/v1/invoices/{}", s["latest_invoice"].as_str().unwrap()),
            &[],
        )
        .await;
    assert_eq!(inv["attempt_count"], 2);
    e.advance(12 * 86_400 + 10).await;
    let s = e.get(&format!("/v1/subscriptions/{sub_id}"), &[]).await;
    assert_eq!(s["status"], "canceled");
    assert_eq!(s["cancellation_details"]["reason"], "payment_failed");
    assert_eq!(e.events("invoice.payment_failed").await.len(), 4);
    assert_eq!(e.events("customer.subscription.deleted").await.len(), 1);
    for ev in e.get("/v1/events", &[("limit", "100")]).await["data"]
        .as_array()
        .unwrap()
    {
        assert_event_parses(ev);
    }
}

#[tokio::test]
async fn clock_past_due_recovers_and_period_end_cancels() {
    let e = emu().await;
    let cus = e.customer_with_card("pm_card_visa").await;
    let sub = e.subscribe(&cus, e.pro.as_str()).await;
    let sub_id = sub["id"].as_str().unwrap();
    e.post(
        &format!("/v1/subscriptions/{sub_id}"),
        &[("cancel_at_period_end", "true")],
    )
    .await;
    e.advance(40 * 86_400).await;
    let s = e.get(&format!("/v1/subscriptions/{sub_id}"), &[]).await;
    assert_eq!(s["status"], "canceled");
    assert_eq!(s["ended_at"], sub["items"]["data"][0]["current_period_end"]);
    let invoices = e.get("/v1/invoices", &[("subscription", sub_id)]).await;
    assert_eq!(
        invoices["data"].as_array().unwrap().len(),
        1,
        "no renewal invoice"
    );
}

#[tokio::test]
async fn faults_fail_a_request_before_its_effect_or_lose_its_answer_after() {
    use reqwest::Method;
    let e = emu().await;
    let (status, fault) = e
        .faults(
            Method::POST,
            &[
                ("method", "POST"),
                ("path_prefix", "/v1/customers"),
                ("when", "before"),
                ("count", "1"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{fault}");
    assert_eq!(fault["remaining"], 1);
    let (_, listed) = e.faults(Method::GET, &[]).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));

    // Before: Stripe's 500, and nothing was created.
    let (status, body) = e
        .send(
            Method::POST,
            "/v1/customers",
            &[("email", "a@example.com")],
            None,
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["type"], "api_error");
    let all = e.get("/v1/customers", &[("email", "a@example.com")]).await;
    assert_eq!(all["data"].as_array().map(Vec::len), Some(0));
    // The fault is used up: the next request goes through.
    e.post("/v1/customers", &[("email", "a@example.com")]).await;

    // A chosen status, and a refused parameter in Stripe's words.
    e.faults(
        Method::POST,
        &[("path_prefix", "/v1/prices"), ("status", "429")],
    )
    .await;
    let (status, body) = e.send(Method::GET, "/v1/prices", &[], None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limit"))
    );
    e.faults(
        Method::POST,
        &[
            ("path_prefix", "/v1/customers"),
            ("status", "400"),
            ("param", "email"),
            ("message", "Invalid email address: x"),
        ],
    )
    .await;
    let (status, body) = e.send(Method::POST, "/v1/customers", &[], None).await;
    assert_eq!(
        (
            status,
            body["error"]["param"].as_str(),
            body["error"]["message"].as_str()
        ),
        (400, Some("email"), Some("Invalid email address: x"))
    );

    // After: the customer is created, the answer never comes (the connection closes).
    e.faults(
        Method::POST,
        &[
            ("method", "POST"),
            ("path_prefix", "/v1/customers"),
            ("when", "after"),
        ],
    )
    .await;
    let lost = e
        .http
        .post(e.url("/v1/customers"))
        .bearer_auth(KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("Idempotency-Key", "lost-1")
        .body("email=b%40example.com")
        .send()
        .await;
    assert!(lost.is_err(), "the answer was lost: {lost:?}");
    let all = e.get("/v1/customers", &[("email", "b@example.com")]).await;
    assert_eq!(all["data"].as_array().map(Vec::len), Some(1));
    // The same key again: Stripe's stored answer, the same customer.
    let (status, again) = e
        .send(
            Method::POST,
            "/v1/customers",
            &[("email", "b@example.com")],
            Some("lost-1"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], all["data"][0]["id"]);

    // Bad fault requests are Stripe-shaped 400s; DELETE disarms everything.
    for bad in [
        &[("path_prefix", "/elsewhere")][..],
        &[("path_prefix", "/v1/x"), ("when", "during")],
        &[("path_prefix", "/v1/x"), ("count", "0")],
        &[("path_prefix", "/v1/x"), ("status", "200")],
        &[("path_prefix", "/v1/x"), ("method", "PATCH")],
    ] {
        let (status, _) = e.faults(Method::POST, bad).await;
        assert_eq!(status, 400, "{bad:?}");
    }
    e.faults(Method::POST, &[("path_prefix", "/v1/")]).await;
    let (_, cleared) = e.faults(Method::DELETE, &[]).await;
    assert_eq!(cleared["data"].as_array().map(Vec::len), Some(0));
    e.get("/v1/customers", &[]).await;
}

#[tokio::test]
async fn events_filter_by_creation_time() {
    let e = emu().await;
    e.post("/v1/customers", &[("email", "early@example.com")])
        .await;
    let early = e.events("customer.created").await;
    let t0 = early[0]["created"].as_i64().unwrap();
    e.advance(3_600).await;
    e.post("/v1/customers", &[("email", "late@example.com")])
        .await;
    let count = |list: Value| list["data"].as_array().map(Vec::len).unwrap_or(0);
    let after = (t0 + 1).to_string();
    let gte = e
        .get(
            "/v1/events",
            &[("type", "customer.created"), ("created[gte]", &after)],
        )
        .await;
    assert_eq!(count(gte.clone()), 1, "{gte}");
    assert_eq!(
        gte["data"][0]["data"]["object"]["email"],
        "late@example.com"
    );
    let before = e
        .get(
            "/v1/events",
            &[("type", "customer.created"), ("created[lt]", &after)],
        )
        .await;
    assert_eq!(count(before), 1);
    let exact = e
        .get(
            "/v1/events",
            &[("type", "customer.created"), ("created", &t0.to_string())],
        )
        .await;
    assert_eq!(count(exact), 1);
}

#[tokio::test]
async fn an_email_stripe_cannot_deliver_to_is_refused_naming_the_parameter() {
    let e = emu().await;
    for bad in [
        "user@example..com",
        "user@example",
        "user@-example.com",
        ".user@example.com",
    ] {
        let (status, body) = e
            .send(
                reqwest::Method::POST,
                "/v1/checkout/sessions",
                &[
                    ("mode", "payment"),
                    ("success_url", "https://shop.test/ok"),
                    ("customer_email", bad),
                    ("line_items[0][price]", e.pro.as_str()),
                    ("line_items[0][quantity]", "1"),
                ],
                None,
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["param"], "customer_email");
        assert_eq!(
            body["error"]["message"],
            format!("Invalid email address: {bad}")
        );
    }
}

/// The portal offers the plans its configuration allows (the sync's: the two tiers' prices)
/// and switches to one, invoiced at once; a price it does not allow is refused. An
/// unconfigured portal offers no switch.
#[tokio::test]
async fn billing_portal_switches_between_the_configured_plans() {
    let e = emu().await;
    let cus = e.customer_with_card("pm_card_visa").await;
    let sub = e.subscribe(&cus, e.pro.as_str()).await;
    let sid = sub["id"].as_str().unwrap().to_string();
    let session = e
        .post(
            "/v1/billing_portal/sessions",
            &[
                ("customer", &cus),
                ("return_url", "http://shop.test/account"),
            ],
        )
        .await;
    let url = session["url"].as_str().unwrap().to_string();
    let html = e.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(&format!("switch-{}", e.enterprise)), "{html}");
    assert!(
        !html.contains(&format!("switch-{}", e.pro)),
        "not to its own plan"
    );

    let switch = |price: String| {
        let (url, sid, http) = (url.clone(), sid.clone(), e.http.clone());
        async move {
            http.post(format!("{url}/switch"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("subscription={sid}&price={price}"))
                .send()
                .await
                .unwrap()
        }
    };
    let refused = switch(e.medium.clone()).await;
    assert_eq!(refused.status(), 402);
    let done = switch(e.enterprise.clone()).await;
    assert_eq!(done.status(), 200);
    let s = e.get(&format!("/v1/subscriptions/{sid}"), &[]).await;
    assert_eq!(s["items"]["data"][0]["price"]["id"], e.enterprise.as_str());
    let invoices = e
        .get("/v1/invoices", &[("subscription", sid.as_str())])
        .await;
    assert_eq!(
        invoices["data"].as_array().map(Vec::len),
        Some(2),
        "the first invoice and the switch's, invoiced at once: {invoices}"
    );

    // An account whose portal was never configured offers no switch.
    let bare = emu_with(stripe_emulator::EmulatorOptions {
        seed_catalog: false,
        ..Default::default()
    })
    .await;
    let cus = bare.customer_with_card("pm_card_visa").await;
    let session = bare
        .post("/v1/billing_portal/sessions", &[("customer", &cus)])
        .await;
    let html = bare
        .http
        .get(session["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("switch-"), "{html}");
}
