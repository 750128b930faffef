//! Invoices, their line items and the payment intents that pay them.

use serde_json::{Map, Value, json};

use crate::catalog;
use crate::customers::{behavior, card_declined};
use crate::store::{CardBehavior, DeclineCode, State, new_id, random_token};
use crate::wire::{ApiError, ApiResult, Params, paginate};

/// How a charge attempt ended.
pub enum Charge {
    Succeeded(Value),
    Declined(Value, DeclineCode),
    RequiresAction(Value),
}

impl Charge {
    pub fn intent(&self) -> &Value {
        match self {
            Charge::Succeeded(pi) | Charge::Declined(pi, _) | Charge::RequiresAction(pi) => pi,
        }
    }
}

/// Creates and confirms a payment intent. `off_session` charges (renewals) skip 3-D Secure for
/// cards that were set up, as Stripe does; `authenticated` is a completed challenge.
#[allow(clippy::too_many_arguments)]
pub fn charge(
    state: &mut State,
    customer: Option<&str>,
    pm_id: &str,
    amount: i64,
    currency: &str,
    description: Option<String>,
    metadata: Map<String, Value>,
    off_session: bool,
    authenticated: bool,
) -> Charge {
    let id = new_id("pi");
    let mut pi = json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": null,
        "amount_received": 0,
        "application": null,
        "application_fee_amount": null,
        "automatic_payment_methods": null,
        "canceled_at": null,
        "cancellation_reason": null,
        "capture_method": "automatic",
        "client_secret": format!("{id}_secret_{}", random_token(25)),
        "confirmation_method": "automatic",
        "created": state.now(),
        "currency": currency,
        "customer": customer,
        "description": description,
        "last_payment_error": null,
        "latest_charge": null,
        "livemode": false,
        "metadata": metadata,
        "next_action": null,
        "on_behalf_of": null,
        "payment_method": pm_id,
        "payment_method_configuration_details": null,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": null,
        "receipt_email": null,
        "review": null,
        "setup_future_usage": if off_session { json!("off_session") } else { Value::Null },
        "shipping": null,
        "source": null,
        "statement_descriptor": null,
        "statement_descriptor_suffix": null,
        "status": "requires_confirmation",
        "transfer_data": null,
        "transfer_group": null,
    });
    state.insert("payment_intent", pi.clone());
    state.emit("payment_intent.created", &pi, None);
    let outcome = match behavior(state, pm_id) {
        CardBehavior::Succeeds => None,
        CardBehavior::Requires3ds if off_session || authenticated => None,
        CardBehavior::Requires3ds => Some(None),
        CardBehavior::Declines(code) => Some(Some(code)),
        CardBehavior::ChargeFails => Some(Some(DeclineCode::Generic)),
    };
    match outcome {
        None => {
            pi["status"] = json!("succeeded");
            pi["amount_received"] = json!(amount);
            pi["latest_charge"] = json!(new_id("ch"));
            state.put(pi.clone());
            state.emit("payment_intent.succeeded", &pi, None);
            Charge::Succeeded(pi)
        }
        Some(Some(code)) => {
            let pm = state.get(pm_id).cloned().unwrap_or(Value::Null);
            let mut err = card_declined(code, None).body()["error"].clone();
            err["payment_method"] = pm;
            err["charge"] = json!(new_id("ch"));
            pi["status"] = json!("requires_payment_method");
            pi["last_payment_error"] = err;
            state.put(pi.clone());
            state.emit("payment_intent.payment_failed", &pi, None);
            Charge::Declined(pi, code)
        }
        Some(None) => {
            pi["status"] = json!("requires_action");
            pi["next_action"] = json!({
                "type": "redirect_to_url",
                "redirect_to_url": { "return_url": null, "url": format!("{}/3ds/{id}", state.base_url) },
            });
            state.put(pi.clone());
            state.emit("payment_intent.requires_action", &pi, None);
            Charge::RequiresAction(pi)
        }
    }
}

/// An invoice line for a price over a period.
#[allow(clippy::too_many_arguments)]
pub fn line(
    state: &State,
    price: &Value,
    quantity: u64,
    amount: i64,
    description: String,
    period: (i64, i64),
    subscription: Option<&str>,
    subscription_item: Option<&str>,
    proration: bool,
) -> Value {
    let parent = match subscription_item {
        Some(si) => json!({
            "invoice_item_details": null,
            "subscription_item_details": {
                "invoice_item": if proration { json!(new_id("ii")) } else { Value::Null },
                "proration": proration,
                "proration_details": { "credited_items": null },
                "subscription": subscription,
                "subscription_item": si,
            },
            "type": "subscription_item_details",
        }),
        None => Value::Null,
    };
    let _ = state;
    json!({
        "id": new_id("il"),
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"],
        "description": description,
        "discount_amounts": [],
        "discountable": !proration,
        "discounts": [],
        "invoice": null,
        "livemode": false,
        "metadata": {},
        "parent": parent,
        "period": { "start": period.0, "end": period.1 },
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": { "price": price["id"], "product": price["product"] },
            "type": "price_details",
            "unit_amount_decimal": price["unit_amount_decimal"],
        },
        "quantity": quantity,
        "quantity_decimal": quantity.to_string(),
        "subtotal": amount,
        "taxes": [],
    })
}

/// A draft invoice object (not stored) for a customer and its lines.
pub fn build(
    state: &State,
    customer_id: &str,
    subscription: Option<&Value>,
    mut lines: Vec<Value>,
    billing_reason: &str,
    period: (i64, i64),
    id: String,
) -> Value {
    let customer = state.get(customer_id).cloned().unwrap_or(Value::Null);
    let total: i64 = lines.iter().filter_map(|l| l["amount"].as_i64()).sum();
    let starting_balance = customer["balance"].as_i64().unwrap_or(0);
    // A negative customer balance is credit that pays invoices before the card does.
    let applied = total + starting_balance;
    let amount_due = applied.max(0);
    for l in &mut lines {
        l["invoice"] = json!(id);
    }
    let currency = lines
        .first()
        .map(|l| l["currency"].clone())
        .unwrap_or(json!("usd"));
    let parent = match subscription {
        Some(sub) => json!({
            "quote_details": null,
            "subscription_details": { "metadata": sub["metadata"], "subscription": sub["id"] },
            "type": "subscription_details",
        }),
        None => Value::Null,
    };
    let count = lines.len();
    json!({
        "id": id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Stripe Emulator",
        "account_tax_ids": null,
        "amount_due": amount_due,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": amount_due,
        "amount_shipping": 0,
        "application": null,
        "attempt_count": 0,
        "attempted": false,
        "auto_advance": true,
        "automatic_tax": { "disabled_reason": null, "enabled": false, "liability": null, "provider": null, "status": null },
        "automatically_finalizes_at": null,
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "confirmation_secret": null,
        "created": state.now(),
        "currency": currency,
        "custom_fields": null,
        "customer": customer_id,
        "customer_address": null,
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "customer_phone": customer["phone"],
        "customer_shipping": null,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": null,
        "default_source": null,
        "default_tax_rates": [],
        "description": null,
        "discounts": [],
        "due_date": null,
        "effective_at": null,
        "ending_balance": null,
        "footer": null,
        "from_invoice": null,
        "hosted_invoice_url": null,
        "invoice_pdf": null,
        "issuer": { "type": "self" },
        "last_finalization_error": null,
        "latest_revision": null,
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": false,
            "total_count": count,
            "url": format!("/v1/invoices/{id}/lines"),
        },
        "livemode": false,
        "metadata": {},
        "next_payment_attempt": null,
        "number": null,
        "on_behalf_of": null,
        "parent": parent,
        "payment_settings": { "default_mandate": null, "payment_method_options": null, "payment_method_types": null },
        "period_end": period.1,
        "period_start": period.0,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": null,
        "rendering": null,
        "shipping_cost": null,
        "shipping_details": null,
        "starting_balance": starting_balance,
        "statement_descriptor": null,
        "status": "draft",
        "status_details": null,
        "status_transitions": { "finalized_at": null, "marked_uncollectible_at": null, "paid_at": null, "voided_at": null },
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "test_clock": null,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": null,
    })
}

/// Stores a new invoice and finalizes it (`invoice.created`, `invoice.finalized`); the
/// customer's credit balance is consumed or grown by it.
pub fn create_and_finalize(state: &mut State, mut invoice: Value) -> Value {
    state.insert("invoice", invoice.clone());
    state.emit("invoice.created", &invoice, None);
    let now = state.now();
    state.invoice_counter += 1;
    let customer_id = invoice["customer"].as_str().unwrap_or_default().to_owned();
    let prefix = state
        .get(&customer_id)
        .and_then(|c| c["invoice_prefix"].as_str())
        .unwrap_or("EMU")
        .to_owned();
    invoice["number"] = json!(format!("{prefix}-{:04}", state.invoice_counter));
    invoice["status"] = json!("open");
    invoice["effective_at"] = json!(now);
    invoice["status_transitions"]["finalized_at"] = json!(now);
    invoice["hosted_invoice_url"] = json!(format!(
        "{}/i/{}",
        state.base_url,
        invoice["id"].as_str().unwrap_or_default()
    ));
    let starting = invoice["starting_balance"].as_i64().unwrap_or(0);
    let total = invoice["total"].as_i64().unwrap_or(0);
    let ending = (starting + total).min(0);
    invoice["ending_balance"] = json!(ending);
    if ending != starting
        && let Ok(old) = state.fetch("customer", &customer_id, "customer")
    {
        let mut new = old.clone();
        new["balance"] = json!(ending);
        state.update_and_emit("customer.updated", &old, new);
    }
    state.put(invoice.clone());
    state.emit("invoice.finalized", &invoice, None);
    invoice
}

/// Attempts to pay an open invoice with a card. Returns the updated invoice and how the charge
/// went (`None` when nothing was due).
pub fn attempt_payment(
    state: &mut State,
    invoice_id: &str,
    pm_id: Option<&str>,
    off_session: bool,
) -> ApiResult<(Value, Option<Charge>)> {
    let mut invoice = state.fetch("invoice", invoice_id, "invoice")?;
    let amount = invoice["amount_remaining"].as_i64().unwrap_or(0);
    let now = state.now();
    if amount <= 0 {
        mark_paid(state, &mut invoice, now);
        return Ok((invoice, None));
    }
    let Some(pm_id) = pm_id else {
        invoice["attempted"] = json!(true);
        invoice["attempt_count"] = json!(invoice["attempt_count"].as_u64().unwrap_or(0) + 1);
        state.put(invoice.clone());
        state.emit("invoice.payment_failed", &invoice, None);
        return Ok((invoice, None));
    };
    let customer = invoice["customer"].as_str().map(str::to_owned);
    let mut meta = Map::new();
    meta.insert("invoice".into(), json!(invoice_id));
    let description = match invoice["billing_reason"].as_str() {
        Some("subscription_create") => "Subscription creation",
        Some("subscription_cycle") => "Subscription renewal",
        Some("subscription_update") => "Subscription update",
        _ => "Invoice payment",
    };
    let currency = invoice["currency"].as_str().unwrap_or("usd").to_owned();
    let result = charge(
        state,
        customer.as_deref(),
        pm_id,
        amount,
        &currency,
        Some(description.to_owned()),
        Map::new(),
        off_session,
        false,
    );
    invoice["attempted"] = json!(true);
    invoice["attempt_count"] = json!(invoice["attempt_count"].as_u64().unwrap_or(0) + 1);
    let pi_id = result.intent()["id"].clone();
    invoice["payments"] = json!({
        "object": "list",
        "data": [{
            "id": new_id("inpay"),
            "object": "invoice_payment",
            "amount_paid": if matches!(result, Charge::Succeeded(_)) { json!(amount) } else { Value::Null },
            "amount_requested": amount,
            "created": now,
            "currency": currency,
            "invoice": invoice_id,
            "is_default": true,
            "livemode": false,
            "payment": { "payment_intent": pi_id, "type": "payment_intent" },
            "status": if matches!(result, Charge::Succeeded(_)) { "paid" } else { "open" },
            "status_transitions": { "canceled_at": null, "paid_at": if matches!(result, Charge::Succeeded(_)) { json!(now) } else { Value::Null } },
        }],
        "has_more": false,
        "url": "/v1/invoice_payments",
    });
    match &result {
        Charge::Succeeded(_) => mark_paid(state, &mut invoice, now),
        Charge::Declined(..) | Charge::RequiresAction(_) => {
            state.put(invoice.clone());
            if matches!(result, Charge::Declined(..)) {
                state.emit("invoice.payment_failed", &invoice, None);
            } else {
                state.emit("invoice.payment_action_required", &invoice, None);
            }
        }
    }
    Ok((invoice, Some(result)))
}

fn mark_paid(state: &mut State, invoice: &mut Value, now: i64) {
    let due = invoice["amount_due"].as_i64().unwrap_or(0);
    invoice["status"] = json!("paid");
    invoice["amount_paid"] = json!(due);
    invoice["amount_remaining"] = json!(0);
    invoice["attempted"] = json!(true);
    invoice["next_payment_attempt"] = Value::Null;
    invoice["status_transitions"]["paid_at"] = json!(now);
    state.put(invoice.clone());
    state.emit("invoice.paid", invoice, None);
    state.emit("invoice.payment_succeeded", invoice, None);
}

pub fn void(state: &mut State, invoice_id: &str) -> ApiResult {
    let mut invoice = state.fetch("invoice", invoice_id, "invoice")?;
    if invoice["status"] != "open" {
        return Err(ApiError::invalid(
            "You can only void an open invoice.",
            None,
        ));
    }
    invoice["status"] = json!("void");
    invoice["next_payment_attempt"] = Value::Null;
    invoice["status_transitions"]["voided_at"] = json!(state.now());
    state.put(invoice.clone());
    state.emit("invoice.voided", &invoice, None);
    Ok(invoice)
}

pub fn list(state: &State, p: &Params) -> ApiResult {
    let customer = p.str("customer")?;
    let subscription = p.str("subscription")?;
    let status = p.str("status")?;
    let items = state
        .all("invoice")
        .into_iter()
        .filter(|i| {
            customer
                .as_ref()
                .is_none_or(|c| i["customer"] == c.as_str())
        })
        .filter(|i| {
            subscription
                .as_ref()
                .is_none_or(|s| i["parent"]["subscription_details"]["subscription"] == s.as_str())
        })
        .filter(|i| status.as_ref().is_none_or(|s| i["status"] == s.as_str()))
        .collect();
    paginate("/v1/invoices", items, p)
}

/// `POST /v1/invoices/{id}/pay`: pays an open invoice, optionally with another card.
pub fn pay(state: &mut State, id: &str, p: &Params) -> ApiResult {
    let invoice = state.fetch("invoice", id, "invoice")?;
    if invoice["status"] == "paid" {
        return Err(ApiError::invalid_code(
            "invoice_already_paid",
            "Invoice is already paid",
            None,
        ));
    }
    if invoice["status"] != "open" {
        return Err(ApiError::invalid(
            format!(
                "You cannot pay this invoice because it is {}.",
                invoice["status"].as_str().unwrap_or("draft")
            ),
            None,
        ));
    }
    let customer_id = invoice["customer"].as_str().unwrap_or_default().to_owned();
    let pm = match p.str("payment_method")? {
        Some(pm) => Some(
            crate::customers::resolve_payment_method(state, &pm, "payment_method")?["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
        None => crate::subscriptions::payment_method_for(
            state,
            &customer_id,
            invoice["parent"]["subscription_details"]["subscription"].as_str(),
        ),
    };
    let (invoice, result) = attempt_payment(
        state,
        id,
        pm.as_deref(),
        p.bool("off_session")?.unwrap_or(false),
    )?;
    if let Some(sub) = invoice["parent"]["subscription_details"]["subscription"].as_str() {
        crate::subscriptions::after_invoice_payment(state, sub, &invoice)?;
    }
    match result {
        Some(Charge::Declined(_, code)) => Err(card_declined(code, None)),
        _ => state.fetch("invoice", id, "invoice"),
    }
}

/// `Unused time on Pro after 1 Jan 2026`, as Stripe words proration lines.
pub fn proration_description(kind: &str, name: &str, at: i64) -> String {
    format!(
        "{kind} time on {name} after {}",
        crate::clock::format_date(at)
    )
}

pub fn price_line_description(state: &State, price: &Value, quantity: u64) -> String {
    let name = catalog::product_name(state, price);
    let amount = shared::catalog::dollars(catalog::unit_amount(price));
    match price["recurring"]["interval"].as_str() {
        Some(interval) => format!("{quantity} × {name} (at {amount} / {interval})"),
        None => format!("{quantity} × {name}"),
    }
}
