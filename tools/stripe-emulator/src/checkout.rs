//! Checkout Sessions: the API and what paying on the hosted page does.

use serde_json::{Value, json};

use crate::catalog;
use crate::customers;
use crate::invoices::{self, Charge};
use crate::store::{CardBehavior, SessionMeta, State, random_token};
use crate::subscriptions::{self, NewSubscription};
use crate::wire::{ApiError, ApiResult, Params, merge_metadata, paginate};

/// Seconds a session stays open unless `expires_at` says otherwise (Stripe's 24 hours).
const SESSION_LIFETIME: i64 = 24 * 3600;

pub fn create(state: &mut State, p: &Params) -> ApiResult {
    let mode = p.req_str("mode")?;
    if mode != "payment" && mode != "subscription" {
        return Err(ApiError::invalid(
            format!("Invalid mode: {mode}. This emulator supports `payment` and `subscription`."),
            Some("mode"),
        ));
    }
    let success_url = p.req_str("success_url")?;
    let cancel_url = p.str("cancel_url")?;
    let customer = p.str("customer")?;
    let customer_email = p.str("customer_email")?;
    if customer.is_some() && customer_email.is_some() {
        return Err(ApiError::invalid(
            "You may only specify one of these parameters: customer, customer_email.",
            Some("customer_email"),
        ));
    }
    if let Some(c) = &customer {
        state.fetch("customer", c, "customer")?;
    }
    if let Some(email) = &customer_email {
        customers::check_email(email, "customer_email")?;
    }
    let mut line_items = Vec::new();
    let mut subtotal = 0i64;
    let mut recurring = 0;
    let raw_items = p.list("line_items")?;
    if raw_items.is_empty() {
        return Err(ApiError::missing("line_items"));
    }
    for (i, item) in raw_items.iter().enumerate() {
        let param = format!("line_items[{i}][price]");
        let price_id = item
            .str("price")?
            .ok_or_else(|| ApiError::missing(&param))?;
        let price = catalog::price(state, &price_id, &param)?;
        let qty_param = format!("line_items[{i}][quantity]");
        let qty = item
            .int("quantity")?
            .ok_or_else(|| ApiError::missing(&qty_param))?;
        let qty = u64::try_from(qty)
            .ok()
            .filter(|q| *q > 0)
            .ok_or_else(|| ApiError::invalid("Quantity must be at least 1.", Some(&qty_param)))?;
        if price["type"] == "recurring" {
            recurring += 1;
            if mode == "payment" {
                return Err(ApiError::invalid(
                    "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.",
                    Some(&param),
                ));
            }
        }
        subtotal += catalog::unit_amount(&price) * i64::try_from(qty).unwrap_or(1);
        line_items.push((price_id, qty));
    }
    if mode == "subscription" && recurring == 0 {
        return Err(ApiError::invalid(
            "You must provide at least one recurring price in `subscription` mode when using prices.",
            Some("line_items"),
        ));
    }
    let now = state.now();
    let expires_at = match p.int("expires_at")? {
        Some(t) if t < now + 1800 || t > now + SESSION_LIFETIME => {
            return Err(ApiError::invalid(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.",
                Some("expires_at"),
            ));
        }
        Some(t) => t,
        None => now + SESSION_LIFETIME,
    };
    let id = format!("cs_test_a1{}", random_token(56));
    let mut metadata = json!({});
    if let Some(m) = p.string_map("metadata")? {
        merge_metadata(&mut metadata, m, false);
    }
    let customer_creation = match (mode.as_str(), &customer) {
        (_, Some(_)) => Value::Null,
        ("subscription", None) => json!("always"),
        _ => json!(
            p.str("customer_creation")?
                .unwrap_or_else(|| "if_required".into())
        ),
    };
    let currency = raw_items
        .first()
        .and_then(|i| i.str("price").ok().flatten())
        .and_then(|pid| state.get(&pid).map(|pr| pr["currency"].clone()))
        .unwrap_or(json!("usd"));
    let session = json!({
        "id": id,
        "object": "checkout.session",
        "adaptive_pricing": null,
        "after_expiration": null,
        "allow_promotion_codes": null,
        "amount_subtotal": subtotal,
        "amount_total": subtotal,
        "automatic_tax": { "enabled": false, "liability": null, "provider": null, "status": null },
        "billing_address_collection": null,
        "cancel_url": cancel_url,
        "client_reference_id": p.str("client_reference_id")?,
        "client_secret": null,
        "consent": null,
        "consent_collection": null,
        "created": now,
        "currency": currency,
        "currency_conversion": null,
        "custom_fields": [],
        "custom_text": { "after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null },
        "customer": customer,
        "customer_creation": customer_creation,
        "customer_details": null,
        "customer_email": customer_email,
        "discounts": [],
        "expires_at": expires_at,
        "invoice": null,
        "invoice_creation": null,
        "livemode": false,
        "locale": null,
        "metadata": metadata,
        "mode": mode,
        "payment_intent": null,
        "payment_link": null,
        "payment_method_collection": "always",
        "payment_method_configuration_details": null,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "phone_number_collection": { "enabled": false },
        "recovered_from": null,
        "saved_payment_method_options": null,
        "setup_intent": null,
        "shipping_address_collection": null,
        "shipping_cost": null,
        "shipping_options": [],
        "status": "open",
        "submit_type": null,
        "subscription": null,
        "success_url": success_url,
        "total_details": { "amount_discount": 0, "amount_shipping": 0, "amount_tax": 0 },
        "ui_mode": "hosted",
        "url": format!("{}/c/pay/{id}", state.base_url),
    });
    state.sessions.insert(
        id.clone(),
        SessionMeta {
            line_items,
            subscription_metadata: p
                .string_map("subscription_data.metadata")?
                .unwrap_or_default(),
            payment_intent_metadata: p
                .string_map("payment_intent_data.metadata")?
                .unwrap_or_default(),
            pending_3ds_card: None,
        },
    );
    Ok(state.insert("checkout.session", session))
}

/// The session's line items as Stripe's `item` objects.
pub fn line_items(state: &State, id: &str) -> Vec<Value> {
    let Some(meta) = state.sessions.get(id) else {
        return vec![];
    };
    meta.line_items
        .iter()
        .enumerate()
        .filter_map(|(i, (price_id, qty))| {
            let price = state.get(price_id)?;
            let amount = catalog::unit_amount(price) * i64::try_from(*qty).unwrap_or(1);
            Some(json!({
                "id": format!("li_{}_{i}", &id[id.len().saturating_sub(12)..]),
                "object": "item",
                "adjustable_quantity": null,
                "amount_discount": 0,
                "amount_subtotal": amount,
                "amount_tax": 0,
                "amount_total": amount,
                "currency": price["currency"],
                "description": catalog::product_name(state, price),
                "metadata": {},
                "price": price,
                "quantity": qty,
            }))
        })
        .collect()
}

/// Adds `line_items` when expanded, as Stripe includes it only on request.
pub fn render(state: &State, mut session: Value, expand: &[String]) -> Value {
    if expand.iter().any(|e| e == "line_items") {
        let id = session["id"].as_str().unwrap_or_default().to_owned();
        session["line_items"] = json!({
            "object": "list",
            "data": line_items(state, &id),
            "has_more": false,
            "url": format!("/v1/checkout/sessions/{id}/line_items"),
        });
    }
    session
}

pub fn list(state: &State, p: &Params) -> ApiResult {
    let customer = p.str("customer")?;
    let subscription = p.str("subscription")?;
    let payment_intent = p.str("payment_intent")?;
    let status = p.str("status")?;
    let items = state
        .all("checkout.session")
        .into_iter()
        .filter(|s| {
            customer
                .as_ref()
                .is_none_or(|c| s["customer"] == c.as_str())
        })
        .filter(|s| {
            subscription
                .as_ref()
                .is_none_or(|c| s["subscription"] == c.as_str())
        })
        .filter(|s| {
            payment_intent
                .as_ref()
                .is_none_or(|c| s["payment_intent"] == c.as_str())
        })
        .filter(|s| status.as_ref().is_none_or(|c| s["status"] == c.as_str()))
        .collect();
    paginate("/v1/checkout/sessions", items, p)
}

pub fn expire(state: &mut State, id: &str) -> ApiResult {
    let mut session = state.fetch("checkout.session", id, "session")?;
    if session["status"] != "open" {
        return Err(ApiError::invalid(
            format!(
                "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of \"{}\".",
                session["status"].as_str().unwrap_or_default()
            ),
            None,
        ));
    }
    session["status"] = json!("expired");
    session["url"] = Value::Null;
    state.put(session.clone());
    state.emit("checkout.session.expired", &session, None);
    Ok(session)
}

/// What submitting a card on the hosted page led to.
pub enum PayOutcome {
    /// Redirect here (`success_url` with the session id filled in).
    Completed(String),
    Declined(String),
    NeedsAuthentication,
}

/// Pays an open session with a card number typed on the hosted page.
pub fn pay(
    state: &mut State,
    id: &str,
    card_number: &str,
    authenticated: bool,
) -> ApiResult<PayOutcome> {
    let session = state.fetch("checkout.session", id, "session")?;
    if session["status"] != "open" {
        return Err(ApiError::invalid(
            "This Checkout Session is no longer open.",
            None,
        ));
    }
    let Some((behavior, _)) = customers::test_card(card_number) else {
        return Ok(PayOutcome::Declined(
            "Your card number is incorrect.".into(),
        ));
    };
    match behavior {
        CardBehavior::Declines(code) => return Ok(PayOutcome::Declined(code.message().into())),
        CardBehavior::ChargeFails => {
            return Ok(PayOutcome::Declined("Your card was declined.".into()));
        }
        CardBehavior::Requires3ds if !authenticated => {
            if let Some(meta) = state.sessions.get_mut(id) {
                meta.pending_3ds_card = Some(card_number.to_owned());
            }
            return Ok(PayOutcome::NeedsAuthentication);
        }
        _ => {}
    }
    let meta = state.sessions.get(id).cloned().unwrap_or_default();
    let pm = customers::create_card(state, card_number, 12, 2034, "card_number")?;
    let pm_id = pm["id"].as_str().unwrap_or_default().to_owned();
    let mode = session["mode"].as_str().unwrap_or_default().to_owned();
    let email = session["customer_email"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            session["customer"]
                .as_str()
                .and_then(|c| state.get(c))
                .and_then(|c| c["email"].as_str().map(str::to_owned))
        });
    let needs_customer = mode == "subscription" || session["customer_creation"] == "always";
    let customer_id = match session["customer"].as_str() {
        Some(c) => Some(c.to_owned()),
        None if needs_customer => {
            let p = Params(json!({ "email": email.clone().unwrap_or_default() }));
            let c = customers::create_customer(state, &p)?;
            c["id"].as_str().map(str::to_owned)
        }
        None => None,
    };
    let mut session = session;
    // As Stripe: Checkout attaches the card to the customer; in subscription mode it becomes
    // the subscription's `default_payment_method`, never the customer's invoice default.
    if let Some(cid) = &customer_id {
        customers::attach(state, &pm, cid)?;
        session["customer"] = json!(cid);
    }
    match mode.as_str() {
        "subscription" => {
            let items = meta
                .line_items
                .iter()
                .filter_map(|(price_id, qty)| state.get(price_id).cloned().map(|p| (p, *qty)))
                .filter(|(p, _)| p["type"] == "recurring")
                .collect();
            let (sub, result) = subscriptions::create_subscription(
                state,
                NewSubscription {
                    customer: customer_id.clone().unwrap_or_default(),
                    items,
                    metadata: meta.subscription_metadata.clone(),
                    default_payment_method: Some(pm_id.clone()),
                    payment_behavior: "allow_incomplete".into(),
                    trial_days: None,
                    cancel_at_period_end: false,
                    authenticated: true,
                },
            )?;
            if let Some(Charge::Declined(_, code)) = result {
                return Ok(PayOutcome::Declined(code.message().into()));
            }
            session["subscription"] = sub["id"].clone();
            session["invoice"] = sub["latest_invoice"].clone();
        }
        _ => {
            let amount = session["amount_total"].as_i64().unwrap_or(0);
            let currency = session["currency"].as_str().unwrap_or("usd").to_owned();
            let result = invoices::charge(
                state,
                customer_id.as_deref(),
                &pm_id,
                amount,
                &currency,
                None,
                meta.payment_intent_metadata.clone(),
                false,
                true,
            );
            if let Charge::Declined(_, code) = result {
                return Ok(PayOutcome::Declined(code.message().into()));
            }
            session["payment_intent"] = result.intent()["id"].clone();
        }
    }
    session["status"] = json!("complete");
    session["payment_status"] = json!("paid");
    session["customer_details"] = json!({
        "address": { "city": null, "country": "US", "line1": null, "line2": null, "postal_code": null, "state": null },
        "business_name": null,
        "email": email,
        "individual_name": null,
        "name": null,
        "phone": null,
        "tax_exempt": "none",
        "tax_ids": [],
    });
    if let Some(m) = state.sessions.get_mut(id) {
        m.pending_3ds_card = None;
    }
    state.put(session.clone());
    state.emit("checkout.session.completed", &session, None);
    let success = session["success_url"]
        .as_str()
        .unwrap_or_default()
        .replace("{CHECKOUT_SESSION_ID}", id);
    Ok(PayOutcome::Completed(success))
}
