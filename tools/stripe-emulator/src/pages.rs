//! The hosted pages: Checkout (with a 3-D Secure challenge) and the billing portal.

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;

use crate::checkout::{self, PayOutcome};
use crate::store::State;
use crate::wire::{Params, decode_pairs, parse_params};
use crate::{App, clock, customers, portal, subscriptions};

const STYLE: &str = r#"
*{box-sizing:border-box}body{margin:0;font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1a1f36;background:#f6f9fc}
.wrap{max-width:960px;margin:0 auto;padding:48px 24px;display:flex;gap:48px;flex-wrap:wrap}
.col{flex:1 1 380px}.card{background:#fff;border-radius:8px;box-shadow:0 2px 5px rgba(60,66,87,.08),0 1px 1px rgba(0,0,0,.12);padding:28px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 10px;color:#3c4257}.muted{color:#697386;font-size:14px}
.total{font-size:36px;font-weight:600;margin:8px 0 24px}.item{display:flex;justify-content:space-between;padding:10px 0;border-bottom:1px solid #e3e8ee;font-size:14px}
label{display:block;font-size:13px;color:#3c4257;margin:16px 0 6px}input{width:100%;padding:10px 12px;font-size:16px;border:1px solid #cfd7df;border-radius:6px}
input:focus{outline:none;border-color:#635bff;box-shadow:0 0 0 3px rgba(99,91,255,.25)}.row{display:flex;gap:12px}.row>div{flex:1}
button{width:100%;margin-top:24px;padding:12px;font-size:16px;font-weight:600;color:#fff;background:#635bff;border:0;border-radius:6px;cursor:pointer}
button:hover{background:#5851e6}button.secondary{background:#fff;color:#3c4257;border:1px solid #cfd7df}button.danger{background:#df1b41}
.error{background:#fff0f0;color:#df1b41;border:1px solid #fbd0d7;padding:10px 12px;border-radius:6px;font-size:14px;margin-top:16px}
.notice{background:#fff8e6;color:#8a5a00;border:1px solid #f5dfa6;padding:10px 12px;border-radius:6px;font-size:14px;margin-top:12px}
.ok{background:#eefbf3;color:#0e6245;border:1px solid #b7ebc9;padding:10px 12px;border-radius:6px;font-size:14px;margin-top:12px}
a{color:#635bff;text-decoration:none}.badge{display:inline-block;font-size:12px;padding:2px 8px;border-radius:10px;background:#e3e8ee;color:#3c4257}
.badge.active,.badge.paid{background:#d7f7c2;color:#05690d}.badge.past_due,.badge.open{background:#fcedb9;color:#a82c00}.badge.canceled{background:#ffe7f2;color:#b3063d}
table{width:100%;border-collapse:collapse;font-size:14px}td,th{text-align:left;padding:8px 4px;border-bottom:1px solid #e3e8ee}
.test{margin-top:20px;font-size:12px;color:#697386;line-height:1.6}.banner{background:#ffde92;color:#5a3e00;text-align:center;font-size:12px;padding:4px;font-weight:600}
form.inline{display:inline}form.inline button{width:auto;padding:8px 14px;font-size:14px;margin-top:12px}
"#;

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body><div class=\"banner\">TEST MODE · Stripe emulator</div>{body}</body></html>",
        esc(title)
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (status, Html(layout(title, body))).into_response()
}

fn message_page(
    status: StatusCode,
    title: &str,
    text: &str,
    link: Option<(&str, &str)>,
) -> Response {
    let link = link
        .map(|(href, label)| format!("<p><a href=\"{}\">{}</a></p>", esc(href), esc(label)))
        .unwrap_or_default();
    page(
        status,
        title,
        &format!(
            "<div class=\"wrap\"><div class=\"col card\"><h1>{}</h1><p class=\"muted\">{}</p>{link}</div></div>",
            esc(title),
            esc(text)
        ),
    )
}

fn form_params(body: &[u8]) -> Params {
    let text = std::str::from_utf8(body).unwrap_or_default();
    Params(parse_params(&decode_pairs(text)).unwrap_or(Value::Null))
}

fn money(cents: i64) -> String {
    shared::catalog::dollars(cents)
}

/// Runs anything due (e.g. expiries) before showing state.
fn catch_up(s: &mut State) {
    let now = s.now();
    let _ = clock::advance_to(s, now);
}

pub async fn index(AxState(app): AxState<App>) -> Response {
    let body = app.with(|s| {
        let prices: String = s
            .all("price")
            .iter()
            .rev()
            .map(|p| {
                format!(
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(p["id"].as_str().unwrap_or_default()),
                    esc(&crate::catalog::product_name(s, p)),
                    money(p["unit_amount"].as_i64().unwrap_or(0)),
                    esc(p["recurring"]["interval"].as_str().unwrap_or("one-time")),
                )
            })
            .collect();
        format!(
            "<div class=\"wrap\"><div class=\"col card\"><h1>Stripe emulator</h1><p class=\"muted\">API base <code>{}</code> · emulator time {}</p><h2>Prices</h2><table><tr><th>Price</th><th>Product</th><th>Amount</th><th>Interval</th></tr>{prices}</table><h2>Tools</h2><p><a href=\"/_emulator/clock\">Clock</a> · <a href=\"/_emulator/deliveries\">Webhook deliveries</a></p></div></div>",
            esc(&s.base_url),
            esc(&clock::format_datetime(s.now())),
        )
    });
    page(StatusCode::OK, "Stripe emulator", &body)
}

fn checkout_form(s: &State, session: &Value, error: Option<&str>, status: StatusCode) -> Response {
    let id = session["id"].as_str().unwrap_or_default();
    let items = checkout::line_items(s, id);
    let mut rows = String::new();
    let mut interval = None;
    for item in &items {
        if let Some(i) = item["price"]["recurring"]["interval"].as_str() {
            interval = Some(i.to_owned());
        }
        let per = item["price"]["recurring"]["interval"]
            .as_str()
            .map(|i| format!(" / {i}"))
            .unwrap_or_default();
        rows.push_str(&format!(
            "<div class=\"item\"><span>{} × {}</span><span>{}{}</span></div>",
            esc(item["description"].as_str().unwrap_or_default()),
            item["quantity"].as_u64().unwrap_or(1),
            money(item["amount_total"].as_i64().unwrap_or(0)),
            esc(&per)
        ));
    }
    let total = session["amount_total"].as_i64().unwrap_or(0);
    let subscription = session["mode"] == "subscription";
    let headline = if subscription {
        format!(
            "{}<span class=\"muted\" style=\"font-size:16px\"> per {}</span>",
            money(total),
            esc(interval.as_deref().unwrap_or("month"))
        )
    } else {
        money(total)
    };
    let email = session["customer_email"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            session["customer"]
                .as_str()
                .and_then(|c| s.get(c))
                .and_then(|c| c["email"].as_str().map(str::to_owned))
        })
        .unwrap_or_default();
    let error = error
        .map(|e| {
            format!(
                "<div class=\"error\" id=\"error\" role=\"alert\">{}</div>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let back = session["cancel_url"]
        .as_str()
        .map(|u| format!("<p><a id=\"cancel\" href=\"{}\">← Back</a></p>", esc(u)))
        .unwrap_or_default();
    let button = if subscription {
        "Subscribe".to_owned()
    } else {
        format!("Pay {}", money(total))
    };
    let body = format!(
        r#"<div class="wrap"><div class="col">{back}<p class="muted">{title}</p><div class="total" id="total">{headline}</div>{rows}<div class="item"><strong>Total due today</strong><strong>{total_str}</strong></div></div>
<div class="col card"><h1>Pay with card</h1><form method="post" action="/c/pay/{id}" id="payment-form">
<label for="email">Email</label><input id="email" name="email" type="email" value="{email}" autocomplete="email">
<label for="card_number">Card information</label><input id="card_number" name="card_number" inputmode="numeric" autocomplete="cc-number" value="4242 4242 4242 4242">
<div class="row"><div><label for="exp">Expiry</label><input id="exp" name="exp" value="12 / 34"></div><div><label for="cvc">CVC</label><input id="cvc" name="cvc" value="123"></div></div>
{error}<button type="submit" id="submit">{button}</button></form>
<div class="test">Test cards: 4242 4242 4242 4242 succeeds · 4000 0000 0000 0002 is declined · 4000 0025 0000 3155 requires 3-D Secure</div></div></div>"#,
        title = if subscription { "Subscribe" } else { "Pay" },
        total_str = money(total),
        email = esc(&email),
    );
    page(status, "Checkout", &body)
}

fn closed_session_page(session: &Value) -> Response {
    match session["status"].as_str() {
        Some("complete") => message_page(
            StatusCode::OK,
            "This payment is complete",
            "This Checkout Session has already been paid. You can close this page.",
            session["success_url"].as_str().map(|u| (u, "Continue")),
        ),
        _ => message_page(
            StatusCode::GONE,
            "This Checkout Session has expired",
            "The payment page is no longer available. Start again from the merchant's site.",
            session["cancel_url"]
                .as_str()
                .map(|u| (u, "Return to the merchant")),
        ),
    }
}

fn not_found() -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no Checkout Session or portal session at this address.",
        None,
    )
}

pub async fn checkout_page(AxState(app): AxState<App>, Path(id): Path<String>) -> Response {
    app.with(|s| {
        catch_up(s);
        let Some(session) = s
            .get(&id)
            .filter(|v| v["object"] == "checkout.session")
            .cloned()
        else {
            return not_found();
        };
        if session["status"] != "open" {
            return closed_session_page(&session);
        }
        checkout_form(s, &session, None, StatusCode::OK)
    })
}

fn redirect(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_owned())],
    )
        .into_response()
}

fn finish_payment(s: &mut State, id: &str, card: &str, authenticated: bool) -> Response {
    let Some(session) = s.get(id).cloned() else {
        return not_found();
    };
    match checkout::pay(s, id, card, authenticated) {
        Ok(PayOutcome::Completed(url)) => redirect(&url),
        Ok(PayOutcome::Declined(msg)) => {
            checkout_form(s, &session, Some(&msg), StatusCode::PAYMENT_REQUIRED)
        }
        Ok(PayOutcome::NeedsAuthentication) => three_ds_page(&session),
        Err(e) => checkout_form(s, &session, Some(&e.message), e.status),
    }
}

pub async fn checkout_submit(
    AxState(app): AxState<App>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = form_params(&body);
    let card = form.str("card_number").ok().flatten().unwrap_or_default();
    app.with(|s| {
        catch_up(s);
        let Some(session) = s
            .get(&id)
            .filter(|v| v["object"] == "checkout.session")
            .cloned()
        else {
            return not_found();
        };
        if session["status"] != "open" {
            return closed_session_page(&session);
        }
        if card.trim().is_empty() {
            return checkout_form(
                s,
                &session,
                Some("Your card number is incomplete."),
                StatusCode::BAD_REQUEST,
            );
        }
        finish_payment(s, &id, &card, false)
    })
}

fn three_ds_page(session: &Value) -> Response {
    let id = esc(session["id"].as_str().unwrap_or_default());
    let body = format!(
        r#"<div class="wrap"><div class="col card"><h1>3D Secure 2 Test Page</h1><p class="muted">This is a test authentication page. In live mode your bank would ask you to confirm the payment of {}.</p>
<form method="post" action="/c/pay/{id}/3ds"><button type="submit" name="action" value="complete" id="complete">Complete authentication</button>
<button type="submit" name="action" value="fail" id="fail" class="secondary">Fail authentication</button></form></div></div>"#,
        money(session["amount_total"].as_i64().unwrap_or(0))
    );
    page(StatusCode::OK, "Authenticate your payment", &body)
}

pub async fn checkout_3ds(
    AxState(app): AxState<App>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = form_params(&body);
    let action = form.str("action").ok().flatten().unwrap_or_default();
    app.with(|s| {
        catch_up(s);
        let Some(session) = s.get(&id).filter(|v| v["object"] == "checkout.session").cloned() else {
            return not_found();
        };
        if session["status"] != "open" {
            return closed_session_page(&session);
        }
        let card = s.sessions.get(&id).and_then(|m| m.pending_3ds_card.clone());
        match (action.as_str(), card) {
            ("complete", Some(card)) => finish_payment(s, &id, &card, true),
            _ => {
                if let Some(m) = s.sessions.get_mut(&id) {
                    m.pending_3ds_card = None;
                }
                checkout_form(
                    s,
                    &session,
                    Some("We are unable to authenticate your payment method. Please choose a different payment method and try again."),
                    StatusCode::PAYMENT_REQUIRED,
                )
            }
        }
    })
}

fn portal_body(s: &State, session: &Value, flash: Option<(&str, &str)>) -> String {
    let id = esc(session["id"].as_str().unwrap_or_default());
    let customer_id = session["customer"].as_str().unwrap_or_default();
    let customer = s.get(customer_id).cloned().unwrap_or(Value::Null);
    let subs: Vec<Value> = s
        .all("subscription")
        .into_iter()
        .filter(|x| x["customer"] == customer_id)
        .collect();
    let mut sub_html = String::new();
    for sub in subs.iter().filter(|x| x["status"] != "incomplete_expired") {
        let item = &sub["items"]["data"][0];
        let name = crate::catalog::product_name(s, &item["price"]);
        let status = sub["status"].as_str().unwrap_or_default();
        let end = subscriptions::period_end(sub).unwrap_or(0);
        let sid = esc(sub["id"].as_str().unwrap_or_default());
        let mut actions = String::new();
        let mut notice = String::new();
        if status == "canceled" {
            notice = format!(
                "<div class=\"notice\">Canceled on {}.</div>",
                clock::format_date(sub["ended_at"].as_i64().unwrap_or(end))
            );
        } else if sub["cancel_at_period_end"] == true {
            notice = format!(
                "<div class=\"notice\" id=\"cancel-notice\">Your plan will be canceled on {}.</div>",
                clock::format_date(end)
            );
            actions = format!(
                "<form class=\"inline\" method=\"post\" action=\"/p/session/{id}/reactivate\"><input type=\"hidden\" name=\"subscription\" value=\"{sid}\"><button type=\"submit\" id=\"reactivate\">Renew plan</button></form>"
            );
        } else {
            actions = format!(
                "<form class=\"inline\" method=\"post\" action=\"/p/session/{id}/cancel\"><input type=\"hidden\" name=\"subscription\" value=\"{sid}\"><button type=\"submit\" class=\"danger\" id=\"cancel-plan\">Cancel plan</button></form>"
            );
            // The plans the portal's configuration lets the customer switch to.
            let current = item["price"]["id"].as_str().unwrap_or_default();
            for price_id in portal::switch_prices(s).iter().filter(|p| *p != current) {
                let Some(price) = s.get(price_id) else {
                    continue;
                };
                actions.push_str(&format!(
                    "<form class=\"inline\" method=\"post\" action=\"/p/session/{id}/switch\"><input type=\"hidden\" name=\"subscription\" value=\"{sid}\"><input type=\"hidden\" name=\"price\" value=\"{}\"><button type=\"submit\" class=\"secondary\" id=\"switch-{}\">Switch to {} ({} per {})</button></form>",
                    esc(price_id),
                    esc(price_id),
                    esc(&crate::catalog::product_name(s, price)),
                    money(price["unit_amount"].as_i64().unwrap_or(0)),
                    esc(price["recurring"]["interval"].as_str().unwrap_or("month")),
                ));
            }
        }
        let renew = if status == "canceled" || sub["cancel_at_period_end"] == true {
            String::new()
        } else {
            format!("Renews on {}", clock::format_date(end))
        };
        sub_html.push_str(&format!(
            "<div class=\"item\" style=\"display:block\"><div style=\"display:flex;justify-content:space-between\"><strong>{}</strong><span class=\"badge {}\">{}</span></div><div class=\"muted\">{} per {} · {}</div>{notice}{actions}</div>",
            esc(&name),
            esc(status),
            esc(status),
            money(item["price"]["unit_amount"].as_i64().unwrap_or(0)),
            esc(item["price"]["recurring"]["interval"].as_str().unwrap_or("month")),
            esc(&renew),
        ));
    }
    if sub_html.is_empty() {
        sub_html = "<p class=\"muted\">No subscriptions.</p>".into();
    }
    let card = customer["invoice_settings"]["default_payment_method"]
        .as_str()
        .and_then(|pm| s.get(pm))
        .map(|pm| {
            format!(
                "<p id=\"card\">{} •••• {} <span class=\"muted\">expires {:02}/{}</span></p>",
                esc(pm["card"]["brand"].as_str().unwrap_or("card")),
                esc(pm["card"]["last4"].as_str().unwrap_or("")),
                pm["card"]["exp_month"].as_i64().unwrap_or(0),
                pm["card"]["exp_year"].as_i64().unwrap_or(0),
            )
        })
        .unwrap_or_else(|| "<p class=\"muted\" id=\"card\">No card on file.</p>".into());
    let invoices: String = s
        .all("invoice")
        .iter()
        .filter(|i| i["customer"] == customer_id)
        .map(|i| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"badge {}\">{}</span></td></tr>",
                esc(i["number"].as_str().unwrap_or("")),
                clock::format_date(i["created"].as_i64().unwrap_or(0)),
                money(i["total"].as_i64().unwrap_or(0)),
                esc(i["status"].as_str().unwrap_or("")),
                esc(i["status"].as_str().unwrap_or("")),
            )
        })
        .collect();
    let flash = flash
        .map(|(class, text)| format!("<div class=\"{class}\" id=\"flash\">{}</div>", esc(text)))
        .unwrap_or_default();
    let back = session["return_url"]
        .as_str()
        .map(|u| {
            format!(
                "<p><a id=\"return\" href=\"{}\">← Return to the merchant</a></p>",
                esc(u)
            )
        })
        .unwrap_or_default();
    format!(
        r#"<div class="wrap"><div class="col">{back}<h1>Billing</h1><p class="muted">{}</p></div><div class="col card" style="flex-basis:520px">{flash}
<h2>Current plan</h2>{sub_html}
<h2>Payment method</h2>{card}<form method="post" action="/p/session/{id}/card"><label for="card_number">New card number</label><input id="card_number" name="card_number" value="4242 4242 4242 4242"><button type="submit" class="secondary" id="update-card">Update card</button></form>
<h2>Invoice history</h2><table><tr><th>Number</th><th>Date</th><th>Amount</th><th>Status</th></tr>{invoices}</table></div></div>"#,
        esc(customer["email"].as_str().unwrap_or("")),
    )
}

pub async fn portal_page(AxState(app): AxState<App>, Path(id): Path<String>) -> Response {
    app.with(|s| {
        catch_up(s);
        match portal::session(s, &id) {
            Some(session) => page(StatusCode::OK, "Billing", &portal_body(s, &session, None)),
            None => not_found(),
        }
    })
}

pub async fn portal_action(
    AxState(app): AxState<App>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let form = form_params(&body);
    app.with(|s| {
        catch_up(s);
        let Some(session) = portal::session(s, &id) else {
            return not_found();
        };
        let customer_id = session["customer"].as_str().unwrap_or_default().to_owned();
        let sub_id = form.str("subscription").ok().flatten().unwrap_or_default();
        let owns_sub = s.get(&sub_id).is_some_and(|x| {
            x["object"] == "subscription" && x["customer"] == customer_id.as_str()
        });
        let result: Result<&str, String> = match action.as_str() {
            "cancel" | "reactivate" if owns_sub => {
                subscriptions::set_cancel_at_period_end(s, &sub_id, action == "cancel")
                    .map(|_| {
                        if action == "cancel" {
                            "Your plan will be canceled at the end of the billing period."
                        } else {
                            "Your plan has been renewed."
                        }
                    })
                    .map_err(|e| e.message)
            }
            "switch" if owns_sub => {
                let price = form.str("price").ok().flatten().unwrap_or_default();
                switch_plan(s, &sub_id, &price).map(|()| "Your plan has been updated.")
            }
            "card" => {
                let number = form.str("card_number").ok().flatten().unwrap_or_default();
                replace_card(s, &customer_id, &number).map(|()| "Your card has been updated.")
            }
            _ => Err("That action is not available.".into()),
        };
        let (status, flash) = match &result {
            Ok(msg) => (StatusCode::OK, ("ok", *msg)),
            Err(msg) => (StatusCode::PAYMENT_REQUIRED, ("error", msg.as_str())),
        };
        page(status, "Billing", &portal_body(s, &session, Some(flash)))
    })
}

/// The portal's plan switch: to a price its configuration allows, prorated and invoiced at
/// once (the configuration's `proration_behavior`), as Stripe's portal does.
fn switch_plan(s: &mut State, sub_id: &str, price: &str) -> Result<(), String> {
    if !portal::switch_prices(s).iter().any(|p| p == price) {
        return Err("That plan is not available.".into());
    }
    let sub = s.get(sub_id).cloned().unwrap_or(Value::Null);
    let item = sub["items"]["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let params = Params(serde_json::json!({
        "items": [{"id": item, "price": price}],
        "proration_behavior": portal::switch_proration(s),
    }));
    subscriptions::update(s, sub_id, &params)
        .map(|_| ())
        .map_err(|e| e.message)
}

fn replace_card(s: &mut State, customer_id: &str, number: &str) -> Result<(), String> {
    let pm = customers::create_card(s, number, 12, 2034, "card_number").map_err(|e| e.message)?;
    let pm = customers::attach(s, &pm, customer_id).map_err(|e| e.message)?;
    let pm_id = pm["id"].as_str().unwrap_or_default().to_owned();
    customers::set_default_payment_method(s, customer_id, &pm_id).map_err(|e| e.message)?;
    // Subscriptions with their own default card follow the new one, as the portal does.
    let subs: Vec<Value> = s
        .all("subscription")
        .into_iter()
        .filter(|x| x["customer"] == customer_id && !x["default_payment_method"].is_null())
        .collect();
    for old in subs {
        let mut new = old.clone();
        new["default_payment_method"] = serde_json::json!(pm_id);
        s.update_and_emit("customer.subscription.updated", &old, new);
    }
    Ok(())
}
