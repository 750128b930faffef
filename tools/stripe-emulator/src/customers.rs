//! Customers and card payment methods, with Stripe's test cards and `pm_card_*` ids.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::store::{CardBehavior, DeclineCode, State, new_id, random_token};
use crate::wire::{ApiError, ApiResult, Params, merge_metadata, paginate};

/// Stripe refuses an address it cannot deliver to (`Invalid email address: …`, naming the
/// parameter): a local part without blanks or doubled, leading or trailing dots; a domain of
/// dot-separated labels of letters, digits and inner hyphens, ending in a top-level domain
/// of two or more letters.
pub fn check_email(email: &str, param: &str) -> ApiResult<()> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let valid = email.rsplit_once('@').is_some_and(|(local, domain)| {
        let labels: Vec<&str> = domain.split('.').collect();
        !local.is_empty()
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && !local.chars().any(|c| c.is_whitespace() || c.is_control())
            && labels.len() >= 2
            && labels.iter().all(|l| label_ok(l))
            && labels
                .last()
                .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
    });
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_code(
            "email_invalid",
            format!("Invalid email address: {email}"),
            Some(param),
        ))
    }
}

pub fn create_customer(state: &mut State, p: &Params) -> ApiResult {
    let id = new_id("cus");
    let mut metadata = json!({});
    if let Some(m) = p.string_map("metadata")? {
        merge_metadata(&mut metadata, m, false);
    }
    let customer = json!({
        "id": id,
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": state.now(),
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": p.str("description")?,
        "discount": null,
        "email": p.str("email")?,
        "invoice_prefix": random_token(8).to_ascii_uppercase(),
        "invoice_settings": {
            "custom_fields": null,
            "default_payment_method": null,
            "footer": null,
            "rendering_options": null,
        },
        "livemode": false,
        "metadata": metadata,
        "name": p.str("name")?,
        "next_invoice_sequence": 1,
        "phone": p.str("phone")?,
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null,
    });
    // Validate the payment method before anything is stored, so a decline leaves no customer.
    let pm = match p.str("payment_method")? {
        Some(pm) => Some(resolve_payment_method(state, &pm, "payment_method")?),
        None => None,
    };
    if let Some(pm) = &pm {
        check_attachable(state, pm)?;
    }
    let requested_default = p.str("invoice_settings.default_payment_method")?;
    let default_pm = match &requested_default {
        // The default may name the `payment_method` being attached (even a `pm_card_*` id).
        Some(d) if p.str("payment_method")?.as_deref() == Some(d.as_str()) => pm
            .as_ref()
            .and_then(|pm| pm["id"].as_str().map(str::to_owned)),
        Some(d) => {
            let other = state.fetch(
                "payment_method",
                d,
                "invoice_settings[default_payment_method]",
            )?;
            if other["customer"].is_null() {
                return Err(ApiError::invalid(
                    format!(
                        "The customer does not have a payment method with the ID {d}. The payment method must be attached to the customer."
                    ),
                    Some("invoice_settings[default_payment_method]"),
                ));
            }
            Some(d.clone())
        }
        None => None,
    };
    let mut customer = customer;
    if let Some(d) = &default_pm {
        customer["invoice_settings"]["default_payment_method"] = json!(d);
    }
    let attached = pm.map(|mut pm| {
        pm["customer"] = json!(id);
        pm
    });
    state.insert("customer", customer.clone());
    if let Some(pm) = &attached {
        state.put(pm.clone());
    }
    state.emit("customer.created", &customer, None);
    if let Some(pm) = &attached {
        state.emit("payment_method.attached", pm, None);
    }
    state.fetch("customer", &id, "id")
}

pub fn update_customer(state: &mut State, id: &str, p: &Params) -> ApiResult {
    let old = state.fetch("customer", id, "id")?;
    let mut new = old.clone();
    for field in ["email", "name", "description", "phone"] {
        if p.get(field).is_some() {
            new[field] = json!(p.str(field)?);
        }
    }
    if let Some(m) = p.string_map("metadata")? {
        let clear = p.get("metadata").is_some_and(|v| v.as_str() == Some(""));
        merge_metadata(&mut new["metadata"], m, clear);
    }
    if p.get("invoice_settings.default_payment_method").is_some() {
        match p.str("invoice_settings.default_payment_method")? {
            Some(pm_id) => {
                let pm = resolve_payment_method(
                    state,
                    &pm_id,
                    "invoice_settings[default_payment_method]",
                )?;
                let pm_id = pm["id"].as_str().unwrap_or_default().to_owned();
                if pm["customer"] != id {
                    return Err(ApiError::invalid(
                        format!(
                            "The customer does not have a payment method with the ID {pm_id}. The payment method must be attached to the customer."
                        ),
                        Some("invoice_settings[default_payment_method]"),
                    ));
                }
                new["invoice_settings"]["default_payment_method"] = json!(pm_id);
            }
            None => new["invoice_settings"]["default_payment_method"] = Value::Null,
        }
    }
    Ok(state.update_and_emit("customer.updated", &old, new))
}

pub fn delete_customer(state: &mut State, id: &str) -> ApiResult {
    let customer = state.fetch("customer", id, "id")?;
    let subs: Vec<String> = state
        .all("subscription")
        .into_iter()
        .filter(|s| {
            s["customer"] == id && s["status"] != "canceled" && s["status"] != "incomplete_expired"
        })
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    for sub in subs {
        crate::subscriptions::end_subscription(state, &sub, "cancellation_requested")?;
    }
    state.objects.remove(id);
    state.emit("customer.deleted", &customer, None);
    Ok(json!({ "id": id, "object": "customer", "deleted": true }))
}

pub fn list_customers(state: &State, p: &Params) -> ApiResult {
    let email = p.str("email")?;
    let items = state
        .all("customer")
        .into_iter()
        .filter(|c| email.as_ref().is_none_or(|e| c["email"] == e.as_str()))
        .collect();
    paginate("/v1/customers", items, p)
}

/// Maps a test card number (spaces allowed) to its behaviour and brand.
pub fn test_card(number: &str) -> Option<(CardBehavior, &'static str)> {
    let digits: String = number
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if digits.len() < 12
        || digits.len() > 19
        || !digits.chars().all(|c| c.is_ascii_digit())
        || !luhn(&digits)
    {
        return None;
    }
    let behavior = match digits.as_str() {
        "4000000000000002" => CardBehavior::Declines(DeclineCode::Generic),
        "4000000000009995" => CardBehavior::Declines(DeclineCode::InsufficientFunds),
        "4000000000000341" => CardBehavior::ChargeFails,
        "4000002500003155" | "4000002760003184" | "4000000000003220" => CardBehavior::Requires3ds,
        _ => CardBehavior::Succeeds,
    };
    let brand = match digits.as_bytes().first() {
        Some(b'4') => "visa",
        Some(b'5') | Some(b'2') => "mastercard",
        Some(b'3') if digits.starts_with("34") || digits.starts_with("37") => "amex",
        Some(b'6') => "discover",
        _ => "unknown",
    };
    Some((behavior, brand))
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 { d - 9 } else { d }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The card numbers behind Stripe's `pm_card_*` and `tok_*` test ids.
fn test_id_number(id: &str) -> Option<&'static str> {
    Some(match id {
        "pm_card_visa" | "tok_visa" => "4242424242424242",
        "pm_card_mastercard" | "tok_mastercard" => "5555555555554444",
        "pm_card_chargeDeclined" | "tok_chargeDeclined" => "4000000000000002",
        "pm_card_chargeDeclinedInsufficientFunds" | "tok_chargeDeclinedInsufficientFunds" => {
            "4000000000009995"
        }
        "pm_card_chargeCustomerFail" | "tok_chargeCustomerFail" => "4000000000000341",
        "pm_card_authenticationRequiredOnSetup" | "pm_card_threeDSecure2Required" => {
            "4000002500003155"
        }
        "pm_card_authenticationRequired" => "4000002760003184",
        _ => return None,
    })
}

/// Creates a card payment method from a number (not attached to anyone).
pub fn create_card(
    state: &mut State,
    number: &str,
    exp_month: i64,
    exp_year: i64,
    param: &str,
) -> ApiResult {
    let (behavior, brand) = test_card(number).ok_or_else(|| {
        let mut e = ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "card_error",
            Some("incorrect_number"),
            "Your card number is incorrect.".to_owned(),
        );
        e.param = Some(param.to_owned());
        e
    })?;
    if !(1..=12).contains(&exp_month) {
        let mut e = ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "card_error",
            Some("invalid_expiry_month"),
            "Your card's expiration month is invalid.".to_owned(),
        );
        e.param = Some("card[exp_month]".to_owned());
        return Err(e);
    }
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let last4 = digits[digits.len().saturating_sub(4)..].to_owned();
    let id = new_id("pm");
    let pm = json!({
        "id": id,
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": {
                "city": null, "country": null, "line1": null, "line2": null,
                "postal_code": null, "state": null,
            },
            "email": null,
            "name": null,
            "phone": null,
            "tax_id": null,
        },
        "card": {
            "brand": brand,
            "checks": { "address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass" },
            "country": "US",
            "display_brand": brand,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "fingerprint": fingerprint(&digits),
            "funding": "credit",
            "generated_from": null,
            "last4": last4,
            "networks": { "available": [brand], "preferred": null },
            "regulated_status": "unregulated",
            "three_d_secure_usage": { "supported": true },
            "wallet": null,
        },
        "created": state.now(),
        "customer": null,
        "livemode": false,
        "metadata": {},
        "type": "card",
    });
    state.card_behavior.insert(id.clone(), behavior);
    Ok(state.insert("payment_method", pm))
}

fn fingerprint(digits: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(digits.as_bytes());
    hex::encode(hash)[..16].to_owned()
}

/// A payment method by id, minting a fresh one for Stripe's `pm_card_*` test ids as Stripe does.
pub fn resolve_payment_method(state: &mut State, id: &str, param: &str) -> ApiResult {
    if let Some(number) = test_id_number(id) {
        return create_card(state, number, 12, 2034, param);
    }
    state.fetch("payment_method", id, param)
}

pub fn behavior(state: &State, pm_id: &str) -> CardBehavior {
    state
        .card_behavior
        .get(pm_id)
        .copied()
        .unwrap_or(CardBehavior::Succeeds)
}

pub fn card_declined(code: DeclineCode, extra: Option<(&str, &str)>) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::PAYMENT_REQUIRED,
        "card_error",
        Some("card_declined"),
        code.message().to_owned(),
    );
    e.extra.insert("decline_code".into(), json!(code.as_str()));
    if let Some((k, v)) = extra {
        e.extra.insert(k.into(), json!(v));
    }
    e
}

fn check_attachable(state: &State, pm: &Value) -> ApiResult<()> {
    let id = pm["id"].as_str().unwrap_or_default();
    if let CardBehavior::Declines(code) = behavior(state, id) {
        return Err(card_declined(code, None));
    }
    Ok(())
}

/// Attaches a payment method to a customer; cards that always decline fail here as on Stripe.
pub fn attach(state: &mut State, pm: &Value, customer_id: &str) -> ApiResult {
    state.fetch("customer", customer_id, "customer")?;
    let pm_id = pm["id"].as_str().unwrap_or_default().to_owned();
    match pm["customer"].as_str() {
        Some(c) if c == customer_id => return Ok(pm.clone()),
        Some(_) => {
            return Err(ApiError::invalid(
                "The payment method you provided has already been attached to a customer.",
                Some("payment_method"),
            ));
        }
        None => {}
    }
    check_attachable(state, pm)?;
    let mut new = pm.clone();
    new["customer"] = json!(customer_id);
    state.put(new.clone());
    state.emit("payment_method.attached", &new, None);
    state.fetch("payment_method", &pm_id, "id")
}

pub fn set_default_payment_method(state: &mut State, customer_id: &str, pm_id: &str) -> ApiResult {
    let old = state.fetch("customer", customer_id, "customer")?;
    let mut new = old.clone();
    new["invoice_settings"]["default_payment_method"] = json!(pm_id);
    Ok(state.update_and_emit("customer.updated", &old, new))
}

pub fn create_payment_method(state: &mut State, p: &Params) -> ApiResult {
    let kind = p.req_str("type")?;
    if kind != "card" {
        return Err(ApiError::invalid(
            format!("The payment method type `{kind}` is not supported by this emulator."),
            Some("type"),
        ));
    }
    if let Some(token) = p.str("card.token")? {
        let number = test_id_number(&token)
            .ok_or_else(|| ApiError::no_such("token", &token, "card[token]"))?;
        return create_card(state, number, 12, 2034, "card[token]");
    }
    let number = p.req_str("card.number")?;
    let exp_month = p
        .int("card.exp_month")?
        .ok_or_else(|| ApiError::missing("card[exp_month]"))?;
    let exp_year = p
        .int("card.exp_year")?
        .ok_or_else(|| ApiError::missing("card[exp_year]"))?;
    let pm = create_card(state, &number, exp_month, exp_year, "card[number]")?;
    let mut pm = pm;
    if let Some(m) = p.string_map("metadata")? {
        merge_metadata(&mut pm["metadata"], m, false);
        state.put(pm.clone());
    }
    Ok(pm)
}

pub fn retrieve_payment_method(state: &mut State, id: &str) -> ApiResult {
    resolve_payment_method(state, id, "payment_method")
}

pub fn attach_payment_method(state: &mut State, id: &str, p: &Params) -> ApiResult {
    let customer = p.req_str("customer")?;
    let pm = resolve_payment_method(state, id, "payment_method")?;
    attach(state, &pm, &customer)
}

pub fn detach_payment_method(state: &mut State, id: &str) -> ApiResult {
    let pm = state.fetch("payment_method", id, "payment_method")?;
    let Some(customer_id) = pm["customer"].as_str().map(str::to_owned) else {
        return Err(ApiError::invalid(
            "The payment method you provided is not attached to a customer so detachment is impossible.",
            None,
        ));
    };
    let mut new = pm.clone();
    new["customer"] = Value::Null;
    state.put(new.clone());
    if let Ok(c) = state.fetch("customer", &customer_id, "customer")
        && c["invoice_settings"]["default_payment_method"] == id
    {
        let mut nc = c.clone();
        nc["invoice_settings"]["default_payment_method"] = Value::Null;
        state.update_and_emit("customer.updated", &c, nc);
    }
    state.emit(
        "payment_method.detached",
        &new,
        Some(json!({ "customer": customer_id })),
    );
    Ok(new)
}

pub fn list_payment_methods(state: &State, customer: Option<&str>, p: &Params) -> ApiResult {
    let customer = match customer {
        Some(c) => Some(c.to_owned()),
        None => p.str("customer")?,
    };
    if let Some(c) = &customer {
        state.fetch("customer", c, "customer")?;
    }
    let items = state
        .all("payment_method")
        .into_iter()
        .filter(|pm| {
            customer
                .as_ref()
                .is_none_or(|c| pm["customer"] == c.as_str())
        })
        .collect();
    let url = match &customer {
        Some(c) => format!("/v1/customers/{c}/payment_methods"),
        None => "/v1/payment_methods".to_owned(),
    };
    paginate(&url, items, p)
}
