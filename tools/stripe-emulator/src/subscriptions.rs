//! Subscriptions: creation with the first invoice, updates with prorations, cancellation,
//! renewals and dunning, and invoice previews.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use crate::catalog;
use crate::clock::add_interval;
use crate::customers::{behavior, card_declined};
use crate::invoices::{self, Charge};
use crate::store::{CardBehavior, State, new_id};
use crate::wire::{ApiError, ApiResult, Params, merge_metadata, paginate};

/// Days after each failed attempt before the next retry; after the last, the subscription is
/// canceled (Stripe's "cancel the subscription" dunning setting).
pub const RETRY_SCHEDULE_DAYS: [i64; 3] = [3, 5, 7];

pub struct NewSubscription {
    pub customer: String,
    pub items: Vec<(Value, u64)>,
    pub metadata: Map<String, Value>,
    pub default_payment_method: Option<String>,
    pub payment_behavior: String,
    pub trial_days: Option<i64>,
    pub cancel_at_period_end: bool,
    /// On-session 3-D Secure already completed (Checkout).
    pub authenticated: bool,
}

pub fn period_end(sub: &Value) -> Option<i64> {
    sub["items"]["data"]
        .as_array()?
        .iter()
        .filter_map(|i| i["current_period_end"].as_i64())
        .min()
}

/// The card a subscription charges: its own default, else the customer's.
pub fn payment_method_for(state: &State, customer: &str, sub: Option<&str>) -> Option<String> {
    sub.and_then(|s| state.get(s))
        .and_then(|s| s["default_payment_method"].as_str())
        .or_else(|| {
            state
                .get(customer)
                .and_then(|c| c["invoice_settings"]["default_payment_method"].as_str())
        })
        .map(str::to_owned)
}

fn item_json(price: &Value, quantity: u64, sub_id: &str, start: i64, end: i64) -> Value {
    json!({
        "id": new_id("si"),
        "object": "subscription_item",
        "billing_thresholds": null,
        "created": start,
        "current_period_end": end,
        "current_period_start": start,
        "discounts": [],
        "metadata": {},
        "plan": catalog::plan_of(price),
        "price": price,
        "quantity": quantity,
        "subscription": sub_id,
        "tax_rates": [],
    })
}

fn interval_of(price: &Value) -> (String, i64) {
    (
        price["recurring"]["interval"]
            .as_str()
            .unwrap_or("month")
            .to_owned(),
        price["recurring"]["interval_count"].as_i64().unwrap_or(1),
    )
}

fn parse_items(state: &State, p: &Params, path: &str) -> ApiResult<Vec<(Value, u64)>> {
    let mut items = Vec::new();
    for (i, item) in p.list(path)?.iter().enumerate() {
        let param = format!("{path}[{i}][price]");
        let price_id = item
            .str("price")?
            .ok_or_else(|| ApiError::missing(&param))?;
        let price = catalog::price(state, &price_id, &param)?;
        catalog::require_recurring(&price, &param)?;
        let qty = item.int("quantity")?.unwrap_or(1);
        let qty = u64::try_from(qty).ok().filter(|q| *q > 0).ok_or_else(|| {
            ApiError::invalid(
                "Invalid quantity: must be positive",
                Some(&format!("{path}[{i}][quantity]")),
            )
        })?;
        items.push((price, qty));
    }
    Ok(items)
}

pub fn create(state: &mut State, p: &Params) -> ApiResult {
    let customer = p.req_str("customer")?;
    state.fetch("customer", &customer, "customer")?;
    let items = parse_items(state, p, "items")?;
    if items.is_empty() {
        return Err(ApiError::missing("items"));
    }
    let payment_behavior = p
        .str("payment_behavior")?
        .unwrap_or_else(|| "allow_incomplete".into());
    if ![
        "allow_incomplete",
        "default_incomplete",
        "error_if_incomplete",
        "pending_if_incomplete",
    ]
    .contains(&payment_behavior.as_str())
    {
        return Err(ApiError::invalid(
            format!("Invalid payment_behavior: {payment_behavior}"),
            Some("payment_behavior"),
        ));
    }
    let default_payment_method = match p.str("default_payment_method")? {
        Some(pm) => {
            let pm = state.fetch("payment_method", &pm, "default_payment_method")?;
            if pm["customer"] != customer.as_str() {
                return Err(ApiError::invalid(
                    "The customer does not have a payment method with that ID.",
                    Some("default_payment_method"),
                ));
            }
            pm["id"].as_str().map(str::to_owned)
        }
        None => None,
    };
    let trial_days = p.int("trial_period_days")?;
    let (sub, result) = create_subscription(
        state,
        NewSubscription {
            customer,
            items,
            metadata: p.string_map("metadata")?.unwrap_or_default(),
            default_payment_method,
            payment_behavior,
            trial_days,
            cancel_at_period_end: p.bool("cancel_at_period_end")?.unwrap_or(false),
            authenticated: false,
        },
    )?;
    if let Some(Charge::Declined(pi, code)) = result {
        // Stripe answers a declined first payment with the card error; the subscription
        // stays `incomplete` and can be paid within 23 hours.
        let mut e = card_declined(code, None);
        e.extra.insert("payment_intent".into(), pi);
        return Err(e);
    }
    Ok(sub)
}

/// Creates a subscription with its first invoice and payment. Fails without side effects
/// when `error_if_incomplete` would not be paid.
pub fn create_subscription(
    state: &mut State,
    req: NewSubscription,
) -> ApiResult<(Value, Option<Charge>)> {
    let now = state.now();
    let pm = req
        .default_payment_method
        .clone()
        .or_else(|| payment_method_for(state, &req.customer, None));
    let needs_payment = req.trial_days.is_none_or(|d| d <= 0);
    if pm.is_none() && needs_payment && req.payment_behavior != "default_incomplete" {
        return Err(ApiError::invalid_code(
            "resource_missing",
            "This customer has no attached payment source or default payment method. Please consider adding a default payment method. For more information, visit https://stripe.com/docs/billing/subscriptions/payment-methods-setting#payment-method-priority.",
            None,
        ));
    }
    if req.payment_behavior == "error_if_incomplete"
        && needs_payment
        && let Some(pm) = &pm
    {
        match behavior(state, pm) {
            CardBehavior::Declines(code) => return Err(card_declined(code, None)),
            CardBehavior::ChargeFails => {
                return Err(card_declined(crate::store::DeclineCode::Generic, None));
            }
            CardBehavior::Requires3ds if !req.authenticated => {
                return Err(ApiError::new(
                    StatusCode::PAYMENT_REQUIRED,
                    "card_error",
                    Some("subscription_payment_intent_invalid_parameter"),
                    "Payment for this subscription requires additional user action before it can be completed successfully.".into(),
                ));
            }
            _ => {}
        }
    }
    let sub_id = new_id("sub");
    let (start, end, trial) = match req.trial_days.filter(|d| *d > 0) {
        Some(days) => (now, now + days * 86_400, true),
        None => {
            let (interval, count) = interval_of(&req.items[0].0);
            (now, add_interval(now, &interval, count), false)
        }
    };
    let items: Vec<Value> = req
        .items
        .iter()
        .map(|(price, qty)| {
            let end = if trial {
                end
            } else {
                let (interval, count) = interval_of(price);
                add_interval(now, &interval, count)
            };
            item_json(price, *qty, &sub_id, start, end)
        })
        .collect();
    let currency = req.items[0].0["currency"].clone();
    let mut sub = json!({
        "id": sub_id.clone(),
        "object": "subscription",
        "application": null,
        "application_fee_percent": null,
        "automatic_tax": { "disabled_reason": null, "enabled": false, "liability": null },
        "billing_cycle_anchor": if trial { end } else { now },
        "billing_cycle_anchor_config": null,
        "billing_mode": { "flexible": null, "type": "classic", "updated_at": null },
        "billing_schedules": [],
        "billing_thresholds": null,
        "cancel_at": if req.cancel_at_period_end { json!(end) } else { Value::Null },
        "cancel_at_period_end": req.cancel_at_period_end,
        "canceled_at": null,
        "cancellation_details": { "comment": null, "feedback": null, "reason": null },
        "collection_method": "charge_automatically",
        "created": now,
        "currency": currency,
        "customer": req.customer,
        "customer_account": null,
        "days_until_due": null,
        "default_payment_method": req.default_payment_method,
        "default_source": null,
        "default_tax_rates": [],
        "description": null,
        "discounts": [],
        "ended_at": null,
        "invoice_settings": { "account_tax_ids": null, "issuer": { "type": "self" } },
        "items": {
            "object": "list",
            "data": items,
            "has_more": false,
            "total_count": req.items.len(),
            "url": format!("/v1/subscription_items?subscription={sub_id}"),
        },
        "latest_invoice": null,
        "livemode": false,
        "metadata": req.metadata,
        "next_pending_invoice_item_invoice": null,
        "on_behalf_of": null,
        "pause_collection": null,
        "payment_settings": {
            "payment_method_options": null,
            "payment_method_types": null,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": null,
        "pending_setup_intent": null,
        "pending_update": null,
        "schedule": null,
        "start_date": now,
        "status": if trial { "trialing" } else { "incomplete" },
        "test_clock": null,
        "transfer_data": null,
        "trial_end": if trial { json!(end) } else { Value::Null },
        "trial_settings": { "end_behavior": { "missing_payment_method": "create_invoice" } },
        "trial_start": if trial { json!(now) } else { Value::Null },
    });
    let invoice_id = new_id("in");
    sub["latest_invoice"] = json!(invoice_id);
    // The customer takes the subscription's currency on its first subscription.
    if let Ok(c) = state.fetch("customer", &req.customer, "customer")
        && c["currency"].is_null()
    {
        let mut nc = c.clone();
        nc["currency"] = currency.clone();
        state.put(nc);
    }
    let lines: Vec<Value> = sub["items"]["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|item| {
            let price = &item["price"];
            let qty = item["quantity"].as_u64().unwrap_or(1);
            let amount = if trial {
                0
            } else {
                catalog::unit_amount(price) * i64::try_from(qty).unwrap_or(1)
            };
            let desc = if trial {
                format!("Trial period for {}", catalog::product_name(state, price))
            } else {
                invoices::price_line_description(state, price, qty)
            };
            invoices::line(
                state,
                price,
                qty,
                amount,
                desc,
                (
                    item["current_period_start"].as_i64().unwrap_or(now),
                    item["current_period_end"].as_i64().unwrap_or(now),
                ),
                Some(&sub_id),
                item["id"].as_str(),
                false,
            )
        })
        .collect();
    state.insert("subscription", sub.clone());
    state.emit("customer.subscription.created", &sub, None);
    let invoice = invoices::build(
        state,
        &req.customer,
        Some(&sub),
        lines,
        "subscription_create",
        (now, now),
        invoice_id.clone(),
    );
    invoices::create_and_finalize(state, invoice);
    if req.payment_behavior == "default_incomplete" && !trial {
        return Ok((state.fetch("subscription", &sub_id, "id")?, None));
    }
    let (invoice, result) = if req.authenticated {
        // Checkout has already authenticated the card on-session.
        invoices::attempt_payment(state, &invoice_id, pm.as_deref(), true)?
    } else {
        invoices::attempt_payment(state, &invoice_id, pm.as_deref(), false)?
    };
    after_invoice_payment(state, &sub_id, &invoice)?;
    Ok((state.fetch("subscription", &sub_id, "id")?, result))
}

/// Moves a subscription's status after one of its invoices was paid or failed.
pub fn after_invoice_payment(state: &mut State, sub_id: &str, invoice: &Value) -> ApiResult<()> {
    let old = state.fetch("subscription", sub_id, "id")?;
    let mut new = old.clone();
    let status = old["status"].as_str().unwrap_or_default();
    if invoice["status"] == "paid" {
        let other_open = state.all("invoice").iter().any(|i| {
            i["status"] == "open"
                && i["parent"]["subscription_details"]["subscription"] == sub_id
                && i["id"] != invoice["id"]
        });
        if matches!(status, "incomplete" | "past_due") && !other_open {
            new["status"] = json!("active");
        }
    } else if invoice["status"] == "open"
        && invoice["attempted"] == true
        && status != "incomplete"
        && status != "trialing"
    {
        new["status"] = json!("past_due");
    }
    if old["status"] == "incomplete" && new["status"] == "incomplete" {
        // Stripe does not emit an update for a first payment that stays incomplete.
        state.put(new);
        return Ok(());
    }
    state.update_and_emit("customer.subscription.updated", &old, new);
    Ok(())
}

pub fn retrieve(state: &State, id: &str) -> ApiResult {
    state.fetch("subscription", id, "id")
}

pub fn list(state: &State, p: &Params) -> ApiResult {
    let customer = p.str("customer")?;
    let status = p.str("status")?;
    let price = p.str("price")?;
    let items = state
        .all("subscription")
        .into_iter()
        .filter(|s| {
            customer
                .as_ref()
                .is_none_or(|c| s["customer"] == c.as_str())
        })
        .filter(|s| match status.as_deref() {
            None => s["status"] != "canceled" && s["status"] != "incomplete_expired",
            Some("all") => true,
            Some(st) => s["status"] == st,
        })
        .filter(|s| {
            price.as_ref().is_none_or(|pr| {
                s["items"]["data"]
                    .as_array()
                    .is_some_and(|items| items.iter().any(|i| i["price"]["id"] == pr.as_str()))
            })
        })
        .collect();
    paginate("/v1/subscriptions", items, p)
}

struct ItemChange {
    index: usize,
    new_price: Value,
    quantity: u64,
}

/// The item changes a request describes (`items[i][id]` with `price`/`quantity`).
fn parse_item_changes(
    state: &State,
    sub: &Value,
    p: &Params,
    path: &str,
) -> ApiResult<Vec<ItemChange>> {
    let current = sub["items"]["data"].as_array().cloned().unwrap_or_default();
    let mut changes = Vec::new();
    for (i, item) in p.list(path)?.iter().enumerate() {
        let index = match item.str("id")? {
            Some(si) => current
                .iter()
                .position(|c| c["id"] == si.as_str())
                .ok_or_else(|| {
                    ApiError::no_such("subscription_item", &si, &format!("{path}[{i}][id]"))
                })?,
            None if current.len() == 1 => 0,
            None => return Err(ApiError::missing(&format!("{path}[{i}][id]"))),
        };
        let new_price = match item.str("price")? {
            Some(price_id) => {
                let param = format!("{path}[{i}][price]");
                let price = catalog::price(state, &price_id, &param)?;
                catalog::require_recurring(&price, &param)?;
                price
            }
            None => current[index]["price"].clone(),
        };
        let quantity = match item.int("quantity")? {
            Some(q) => u64::try_from(q).ok().filter(|q| *q > 0).ok_or_else(|| {
                ApiError::invalid("Invalid quantity", Some(&format!("{path}[{i}][quantity]")))
            })?,
            None => current[index]["quantity"].as_u64().unwrap_or(1),
        };
        changes.push(ItemChange {
            index,
            new_price,
            quantity,
        });
    }
    Ok(changes)
}

/// Credit for the unused part of each changed item and a charge for the rest of the period at
/// the new price, both for the fraction of the period left at `at`.
fn proration_lines(state: &State, sub: &Value, changes: &[ItemChange], at: i64) -> Vec<Value> {
    let items = sub["items"]["data"].as_array().cloned().unwrap_or_default();
    let sub_id = sub["id"].as_str();
    let mut lines = Vec::new();
    for ch in changes {
        let Some(item) = items.get(ch.index) else {
            continue;
        };
        let old_price = &item["price"];
        let old_qty = item["quantity"].as_u64().unwrap_or(1);
        if old_price["id"] == ch.new_price["id"] && old_qty == ch.quantity {
            continue;
        }
        let start = item["current_period_start"].as_i64().unwrap_or(at);
        let end = item["current_period_end"].as_i64().unwrap_or(at);
        let at = at.clamp(start, end);
        let span = (end - start).max(1);
        let remaining = end - at;
        let prorate = |amount: i64| -> i64 {
            // Stripe rounds each proration to the nearest cent.
            let num = i128::from(amount) * i128::from(remaining);
            let den = i128::from(span);
            i64::try_from((num * 2 + den).div_euclid(den * 2)).unwrap_or(0)
        };
        let old_amount = catalog::unit_amount(old_price) * i64::try_from(old_qty).unwrap_or(1);
        let new_amount =
            catalog::unit_amount(&ch.new_price) * i64::try_from(ch.quantity).unwrap_or(1);
        let si = item["id"].as_str();
        lines.push(invoices::line(
            state,
            old_price,
            old_qty,
            -prorate(old_amount),
            invoices::proration_description("Unused", &catalog::product_name(state, old_price), at),
            (at, end),
            sub_id,
            si,
            true,
        ));
        lines.push(invoices::line(
            state,
            &ch.new_price,
            ch.quantity,
            prorate(new_amount),
            invoices::proration_description(
                "Remaining",
                &catalog::product_name(state, &ch.new_price),
                at,
            ),
            (at, end),
            sub_id,
            si,
            true,
        ));
    }
    lines
}

fn apply_item_changes(sub: &mut Value, changes: &[ItemChange]) {
    if let Some(items) = sub["items"]["data"].as_array_mut() {
        for ch in changes {
            if let Some(item) = items.get_mut(ch.index) {
                item["price"] = ch.new_price.clone();
                item["plan"] = catalog::plan_of(&ch.new_price);
                item["quantity"] = json!(ch.quantity);
            }
        }
    }
}

fn proration_behavior(p: &Params, path: &str) -> ApiResult<String> {
    let b = p.str(path)?.unwrap_or_else(|| "create_prorations".into());
    if !["create_prorations", "always_invoice", "none"].contains(&b.as_str()) {
        return Err(ApiError::invalid(
            "Invalid proration_behavior: must be one of create_prorations, always_invoice, or none",
            Some(&crate::wire::dotted_to_bracket(path)),
        ));
    }
    Ok(b)
}

pub fn update(state: &mut State, id: &str, p: &Params) -> ApiResult {
    let old = state.fetch("subscription", id, "id")?;
    if matches!(
        old["status"].as_str(),
        Some("canceled" | "incomplete_expired")
    ) {
        return Err(ApiError::invalid(
            "A canceled subscription can only update its cancellation_details and metadata.",
            None,
        ));
    }
    let behavior = proration_behavior(p, "proration_behavior")?;
    let changes = parse_item_changes(state, &old, p, "items")?;
    let now = state.now();
    let at = p.int("proration_date")?.unwrap_or(now);
    let mut new = old.clone();
    if let Some(cancel) = p.bool("cancel_at_period_end")? {
        new["cancel_at_period_end"] = json!(cancel);
        new["cancel_at"] = if cancel {
            json!(period_end(&old))
        } else {
            Value::Null
        };
        new["canceled_at"] = if cancel { json!(now) } else { Value::Null };
        new["cancellation_details"]["reason"] = if cancel {
            json!("cancellation_requested")
        } else {
            Value::Null
        };
    }
    if let Some(m) = p.string_map("metadata")? {
        let clear = p.get("metadata").is_some_and(|v| v.as_str() == Some(""));
        merge_metadata(&mut new["metadata"], m, clear);
    }
    if p.get("default_payment_method").is_some() {
        new["default_payment_method"] = match p.str("default_payment_method")? {
            Some(pm) => {
                let pm = state.fetch("payment_method", &pm, "default_payment_method")?;
                pm["id"].clone()
            }
            None => Value::Null,
        };
    }
    let mut prorations = if behavior == "none" || old["status"] == "trialing" {
        vec![]
    } else {
        proration_lines(state, &old, &changes, at)
    };
    apply_item_changes(&mut new, &changes);
    let new = state.update_and_emit("customer.subscription.updated", &old, new);
    if prorations.is_empty() {
        return state.fetch("subscription", id, "id");
    }
    if behavior == "always_invoice" {
        let mut lines = state.pending_lines.remove(id).unwrap_or_default();
        lines.append(&mut prorations);
        let customer = new["customer"].as_str().unwrap_or_default().to_owned();
        let invoice_id = new_id("in");
        let invoice = invoices::build(
            state,
            &customer,
            Some(&new),
            lines,
            "subscription_update",
            (now, now),
            invoice_id.clone(),
        );
        invoices::create_and_finalize(state, invoice);
        let mut s = state.fetch("subscription", id, "id")?;
        s["latest_invoice"] = json!(invoice_id);
        state.put(s);
        let pm = payment_method_for(state, &customer, Some(id));
        let (invoice, _) = invoices::attempt_payment(state, &invoice_id, pm.as_deref(), true)?;
        if invoice["status"] == "open" {
            schedule_retry(state, &invoice_id)?;
        }
        after_invoice_payment(state, id, &invoice)?;
    } else {
        state
            .pending_lines
            .entry(id.to_owned())
            .or_default()
            .append(&mut prorations);
    }
    state.fetch("subscription", id, "id")
}

/// Portal and API: sets or clears cancellation at period end.
pub fn set_cancel_at_period_end(state: &mut State, id: &str, cancel: bool) -> ApiResult {
    let p = Params(json!({ "cancel_at_period_end": cancel.to_string() }));
    update(state, id, &p)
}

pub fn cancel(state: &mut State, id: &str, _p: &Params) -> ApiResult {
    let sub = state.fetch("subscription", id, "id")?;
    if matches!(
        sub["status"].as_str(),
        Some("canceled" | "incomplete_expired")
    ) {
        return Err(ApiError::no_such("subscription", id, "id")
            .with_message(format!("A canceled subscription can only update its cancellation_details and metadata. ({id})")));
    }
    end_subscription(state, id, "cancellation_requested")
}

impl ApiError {
    fn with_message(mut self, message: String) -> Self {
        self.message = message;
        self.status = StatusCode::BAD_REQUEST;
        self.code = None;
        self
    }
}

/// Ends a subscription now (`customer.subscription.deleted`).
pub fn end_subscription(state: &mut State, id: &str, reason: &str) -> ApiResult {
    let mut sub = state.fetch("subscription", id, "id")?;
    let now = state.now();
    sub["status"] = json!("canceled");
    sub["ended_at"] = json!(now);
    if sub["canceled_at"].is_null() {
        sub["canceled_at"] = json!(now);
    }
    sub["cancellation_details"]["reason"] = json!(reason);
    state.put(sub.clone());
    state.pending_lines.remove(id);
    state.emit("customer.subscription.deleted", &sub, None);
    Ok(sub)
}

/// A subscription's period ended: cancel if asked to, else renew and charge.
pub fn period_ended(state: &mut State, id: &str) -> ApiResult<()> {
    let old = state.fetch("subscription", id, "id")?;
    if old["cancel_at_period_end"] == true {
        end_subscription(state, id, "cancellation_requested")?;
        return Ok(());
    }
    let now = state.now();
    let customer = old["customer"].as_str().unwrap_or_default().to_owned();
    let mut new = old.clone();
    let mut lines = state.pending_lines.remove(id).unwrap_or_default();
    let prev_period = (
        old["items"]["data"][0]["current_period_start"]
            .as_i64()
            .unwrap_or(now),
        period_end(&old).unwrap_or(now),
    );
    let mut regular = Vec::new();
    if let Some(items) = new["items"]["data"].as_array_mut() {
        for item in items.iter_mut() {
            let start = item["current_period_end"].as_i64().unwrap_or(now);
            let (interval, count) = interval_of(&item["price"]);
            let end = add_interval(start, &interval, count);
            item["current_period_start"] = json!(start);
            item["current_period_end"] = json!(end);
            regular.push((
                item["price"].clone(),
                item["quantity"].as_u64().unwrap_or(1),
                item["id"].clone(),
                start,
                end,
            ));
        }
    }
    for (price, qty, si, start, end) in regular {
        let amount = catalog::unit_amount(&price) * i64::try_from(qty).unwrap_or(1);
        let desc = invoices::price_line_description(state, &price, qty);
        lines.push(invoices::line(
            state,
            &price,
            qty,
            amount,
            desc,
            (start, end),
            Some(id),
            si.as_str(),
            false,
        ));
    }
    if new["status"] == "trialing" {
        new["status"] = json!("active");
    }
    let invoice_id = new_id("in");
    new["latest_invoice"] = json!(invoice_id);
    let new = state.update_and_emit("customer.subscription.updated", &old, new);
    let invoice = invoices::build(
        state,
        &customer,
        Some(&new),
        lines,
        "subscription_cycle",
        prev_period,
        invoice_id.clone(),
    );
    invoices::create_and_finalize(state, invoice);
    let pm = payment_method_for(state, &customer, Some(id));
    let (invoice, _) = invoices::attempt_payment(state, &invoice_id, pm.as_deref(), true)?;
    if invoice["status"] == "open" {
        schedule_retry(state, &invoice_id)?;
    }
    after_invoice_payment(state, id, &invoice)
}

/// Sets `next_payment_attempt` after a failed attempt, or `None` when retries are exhausted.
fn schedule_retry(state: &mut State, invoice_id: &str) -> ApiResult<Option<i64>> {
    let mut invoice = state.fetch("invoice", invoice_id, "invoice")?;
    let attempts = invoice["attempt_count"].as_u64().unwrap_or(1);
    let next = usize::try_from(attempts)
        .ok()
        .and_then(|a| RETRY_SCHEDULE_DAYS.get(a.saturating_sub(1)))
        .map(|days| state.now() + days * 86_400);
    invoice["next_payment_attempt"] = json!(next);
    state.put(invoice);
    Ok(next)
}

/// A scheduled retry of an open subscription invoice.
pub fn retry_invoice(state: &mut State, invoice_id: &str) -> ApiResult<()> {
    let invoice = state.fetch("invoice", invoice_id, "invoice")?;
    let Some(sub_id) = invoice["parent"]["subscription_details"]["subscription"]
        .as_str()
        .map(str::to_owned)
    else {
        let mut inv = invoice;
        inv["next_payment_attempt"] = Value::Null;
        state.put(inv);
        return Ok(());
    };
    let sub = state.fetch("subscription", &sub_id, "id")?;
    if sub["status"] == "canceled" {
        let mut inv = invoice;
        inv["next_payment_attempt"] = Value::Null;
        state.put(inv);
        return Ok(());
    }
    let customer = invoice["customer"].as_str().unwrap_or_default().to_owned();
    let pm = payment_method_for(state, &customer, Some(&sub_id));
    let (invoice, _) = invoices::attempt_payment(state, invoice_id, pm.as_deref(), true)?;
    if invoice["status"] == "paid" {
        return after_invoice_payment(state, &sub_id, &invoice);
    }
    if schedule_retry(state, invoice_id)?.is_none() {
        end_subscription(state, &sub_id, "payment_failed")?;
    }
    Ok(())
}

/// The first payment of an `incomplete` subscription was not made within 23 hours.
pub fn expire_incomplete(state: &mut State, id: &str) -> ApiResult<()> {
    let old = state.fetch("subscription", id, "id")?;
    let mut new = old.clone();
    new["status"] = json!("incomplete_expired");
    new["ended_at"] = json!(state.now());
    state.update_and_emit("customer.subscription.updated", &old, new.clone());
    state.emit("customer.subscription.deleted", &new, None);
    if let Some(inv) = old["latest_invoice"].as_str()
        && state.get(inv).is_some_and(|i| i["status"] == "open")
    {
        invoices::void(state, inv)?;
    }
    Ok(())
}

/// `POST /v1/invoices/create_preview`: the invoice a subscription change (or a new
/// subscription) would produce, with prorations computed at emulator time.
pub fn preview(state: &State, p: &Params) -> ApiResult {
    let now = state.now();
    let sub_id = p.str("subscription")?;
    let customer = match (p.str("customer")?, &sub_id) {
        (Some(c), _) => c,
        (None, Some(s)) => state.fetch("subscription", s, "subscription")?["customer"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        (None, None) => return Err(ApiError::missing("customer")),
    };
    state.fetch("customer", &customer, "customer")?;
    let id = format!("upcoming_{}", new_id("in"));
    let Some(sub_id) = sub_id else {
        let items = parse_items(state, p, "subscription_details.items")?;
        if items.is_empty() {
            return Err(ApiError::missing("subscription_details[items]"));
        }
        let lines = items
            .iter()
            .map(|(price, qty)| {
                let (interval, count) = interval_of(price);
                let amount = catalog::unit_amount(price) * i64::try_from(*qty).unwrap_or(1);
                invoices::line(
                    state,
                    price,
                    *qty,
                    amount,
                    invoices::price_line_description(state, price, *qty),
                    (now, add_interval(now, &interval, count)),
                    None,
                    None,
                    false,
                )
            })
            .collect();
        return Ok(invoices::build(
            state,
            &customer,
            None,
            lines,
            "subscription_create",
            (now, now),
            id,
        ));
    };
    let sub = state.fetch("subscription", &sub_id, "subscription")?;
    if sub["customer"] != customer.as_str() {
        return Err(ApiError::invalid(
            "The subscription does not belong to that customer.",
            Some("subscription"),
        ));
    }
    let behavior = proration_behavior(p, "subscription_details.proration_behavior")?;
    let changes = parse_item_changes(state, &sub, p, "subscription_details.items")?;
    let at = p.int("subscription_details.proration_date")?.unwrap_or(now);
    let mut lines = state
        .pending_lines
        .get(&sub_id)
        .cloned()
        .unwrap_or_default();
    if behavior != "none" && sub["status"] != "trialing" {
        lines.extend(proration_lines(state, &sub, &changes, at));
    }
    let mut updated = sub.clone();
    apply_item_changes(&mut updated, &changes);
    if behavior == "always_invoice" {
        return Ok(invoices::build(
            state,
            &customer,
            Some(&updated),
            lines,
            "subscription_update",
            (now, now),
            id,
        ));
    }
    let cancels = p
        .bool("subscription_details.cancel_at_period_end")?
        .unwrap_or(sub["cancel_at_period_end"] == true);
    let period = (
        sub["items"]["data"][0]["current_period_start"]
            .as_i64()
            .unwrap_or(now),
        period_end(&sub).unwrap_or(now),
    );
    if !cancels {
        for item in updated["items"]["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let price = &item["price"];
            let qty = item["quantity"].as_u64().unwrap_or(1);
            let start = item["current_period_end"].as_i64().unwrap_or(now);
            let (interval, count) = interval_of(price);
            let amount = catalog::unit_amount(price) * i64::try_from(qty).unwrap_or(1);
            lines.push(invoices::line(
                state,
                price,
                qty,
                amount,
                invoices::price_line_description(state, price, qty),
                (start, add_interval(start, &interval, count)),
                Some(&sub_id),
                item["id"].as_str(),
                false,
            ));
        }
    }
    let mut invoice = invoices::build(
        state,
        &customer,
        Some(&updated),
        lines,
        "upcoming",
        period,
        id,
    );
    invoice["next_payment_attempt"] = json!(period.1);
    Ok(invoice)
}
