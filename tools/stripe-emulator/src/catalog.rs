//! Products and prices, and the Customer Portal's configurations. The emulator starts with
//! none of the catalog: `start` seeds it over HTTP with the same sync `admin stripe-sync` runs
//! against a real account (`shared::stripe::prices::sync`), so every local stack resolves its
//! prices by lookup key as a deployed function does.

use serde_json::{Value, json};

use crate::store::{State, new_id};
use crate::wire::{ApiError, ApiResult, Params, merge_metadata, paginate};

/// `POST /v1/products`: `id` is the caller's when given (Stripe takes one).
pub fn create_product(state: &mut State, p: &Params) -> ApiResult {
    let name = p.req_str("name")?;
    let id = match p.str("id")? {
        Some(id) if state.get(&id).is_some() => {
            return Err(ApiError::invalid_code(
                "resource_already_exists",
                format!("Product already exists: {id}"),
                Some("id"),
            ));
        }
        Some(id) => id,
        None => new_id("prod"),
    };
    let now = state.now();
    let mut metadata = json!({});
    if let Some(m) = p.string_map("metadata")? {
        merge_metadata(&mut metadata, m, false);
    }
    let product = json!({
        "id": id,
        "object": "product",
        "active": p.bool("active")?.unwrap_or(true),
        "created": now,
        "default_price": null,
        "description": p.str("description")?,
        "images": [],
        "livemode": false,
        "marketing_features": [],
        "metadata": metadata,
        "name": name,
        "package_dimensions": null,
        "shippable": null,
        "statement_descriptor": null,
        "tax_code": null,
        "type": "service",
        "unit_label": null,
        "updated": now,
        "url": null,
    });
    Ok(state.insert("product", product))
}

/// `POST /v1/products/{id}`: name, active, metadata.
pub fn update_product(state: &mut State, id: &str, p: &Params) -> ApiResult {
    let mut product = state.fetch("product", id, "id")?;
    if let Some(name) = p.str("name")? {
        product["name"] = json!(name);
    }
    if let Some(active) = p.bool("active")? {
        product["active"] = json!(active);
    }
    if let Some(m) = p.string_map("metadata")? {
        merge_metadata(&mut product["metadata"], m, false);
    }
    product["updated"] = json!(state.now());
    state.put(product.clone());
    Ok(product)
}

/// The active price holding `lookup_key`, if any (a lookup key names one price at a time).
fn holder_of(state: &State, lookup_key: &str) -> Option<Value> {
    state
        .all("price")
        .into_iter()
        .find(|x| x["lookup_key"] == lookup_key)
}

/// Takes `lookup_key` for `new_id`: refused when another price holds it, unless
/// `transfer_lookup_key` moves it (Stripe's rule: lookup keys are unique in an account).
fn claim_lookup_key(
    state: &mut State,
    lookup_key: &str,
    transfer: bool,
    new_id: &str,
) -> ApiResult<()> {
    if let Some(mut holder) = holder_of(state, lookup_key).filter(|h| h["id"] != new_id) {
        if !transfer {
            return Err(ApiError::invalid(
                format!(
                    "A price (`{}`) already uses that lookup key.",
                    holder["id"].as_str().unwrap_or_default()
                ),
                Some("lookup_key"),
            ));
        }
        holder["lookup_key"] = Value::Null;
        state.put(holder);
    }
    Ok(())
}

/// `POST /v1/prices`: a per-unit price of a product, one-time or recurring.
pub fn create_price(state: &mut State, p: &Params) -> ApiResult {
    let currency = p.req_str("currency")?.to_ascii_lowercase();
    let product = p.req_str("product")?;
    state.fetch("product", &product, "product")?;
    let cents = p
        .int("unit_amount")?
        .ok_or_else(|| ApiError::missing("unit_amount"))?;
    if cents < 0 {
        return Err(ApiError::invalid(
            "This value must be greater than or equal to 0.",
            Some("unit_amount"),
        ));
    }
    let interval = p.str("recurring.interval")?;
    if let Some(i) = &interval
        && !["day", "week", "month", "year"].contains(&i.as_str())
    {
        return Err(ApiError::invalid(
            "Invalid recurring[interval]: must be one of day, week, month, or year",
            Some("recurring[interval]"),
        ));
    }
    let id = new_id("price");
    let lookup_key = p.str("lookup_key")?;
    if let Some(key) = &lookup_key {
        let transfer = p.bool("transfer_lookup_key")?.unwrap_or(false);
        claim_lookup_key(state, key, transfer, &id)?;
    }
    let mut metadata = json!({});
    if let Some(m) = p.string_map("metadata")? {
        merge_metadata(&mut metadata, m, false);
    }
    let recurring = interval.as_ref().map(|i| {
        json!({
            "interval": i,
            "interval_count": p.int("recurring.interval_count").ok().flatten().unwrap_or(1),
            "meter": null,
            "trial_period_days": null,
            "usage_type": "licensed",
        })
    });
    let price = json!({
        "id": id,
        "object": "price",
        "active": p.bool("active")?.unwrap_or(true),
        "billing_scheme": "per_unit",
        "created": state.now(),
        "currency": currency,
        "custom_unit_amount": null,
        "livemode": false,
        "lookup_key": lookup_key,
        "metadata": metadata,
        "nickname": p.str("nickname")?,
        "product": product,
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": null,
        "transform_quantity": null,
        "type": if interval.is_some() { "recurring" } else { "one_time" },
        "unit_amount": cents,
        "unit_amount_decimal": cents.to_string(),
    });
    Ok(state.insert("price", price))
}

/// `POST /v1/prices/{id}`: what Stripe lets change on a price (never its amount).
pub fn update_price(state: &mut State, id: &str, p: &Params) -> ApiResult {
    let mut price = state.fetch("price", id, "id")?;
    if let Some(active) = p.bool("active")? {
        price["active"] = json!(active);
    }
    if let Some(nickname) = p.str("nickname")? {
        price["nickname"] = json!(nickname);
    }
    if let Some(m) = p.string_map("metadata")? {
        merge_metadata(&mut price["metadata"], m, false);
    }
    // `lookup_key=` (empty) removes the key, as Stripe's empty value unsets a field.
    if let Some(Value::String(key)) = p.get("lookup_key") {
        if key.is_empty() {
            price["lookup_key"] = Value::Null;
        } else {
            let transfer = p.bool("transfer_lookup_key")?.unwrap_or(false);
            claim_lookup_key(state, key, transfer, id)?;
            price["lookup_key"] = json!(key);
        }
    }
    state.put(price.clone());
    Ok(price)
}

/// The portal configuration a new account has once its portal settings are saved: the
/// default, with cancellation at period end and no plan switching until configured.
pub fn seed_portal(state: &mut State) {
    let now = state.now();
    let configuration = json!({
        "id": "bpc_emulator_default",
        "object": "billing_portal.configuration",
        "active": true,
        "application": null,
        "business_profile": {"headline": null, "privacy_policy_url": null, "terms_of_service_url": null},
        "created": now,
        "default_return_url": null,
        "features": {
            "customer_update": {"allowed_updates": [], "enabled": false},
            "invoice_history": {"enabled": true},
            "payment_method_update": {"enabled": true},
            "subscription_cancel": {
                "cancellation_reason": {"enabled": false, "options": []},
                "enabled": true,
                "mode": "at_period_end",
                "proration_behavior": "none",
            },
            "subscription_update": {
                "default_allowed_updates": [],
                "enabled": false,
                "products": [],
                "proration_behavior": "none",
            },
        },
        "is_default": true,
        "livemode": false,
        "login_page": {"enabled": false, "url": null},
        "metadata": {},
        "name": null,
        "updated": now,
    });
    state.insert("billing_portal.configuration", configuration);
}

/// `POST /v1/billing_portal/configurations[/{id}]`: the features the sync sets.
pub fn save_portal(state: &mut State, id: Option<&str>, p: &Params) -> ApiResult {
    let mut configuration = match id {
        Some(id) => state.fetch("billing_portal.configuration", id, "configuration")?,
        None => {
            let mut c = state
                .fetch(
                    "billing_portal.configuration",
                    "bpc_emulator_default",
                    "configuration",
                )
                .unwrap_or_else(|_| json!({"features": {}}));
            c["id"] = json!(new_id("bpc"));
            c["is_default"] = json!(false);
            c["created"] = json!(state.now());
            c["object"] = json!("billing_portal.configuration");
            c
        }
    };
    let features = &mut configuration["features"];
    for flag in ["invoice_history", "payment_method_update"] {
        if let Some(enabled) = p.bool(&format!("features.{flag}.enabled"))? {
            features[flag]["enabled"] = json!(enabled);
        }
    }
    if let Some(enabled) = p.bool("features.subscription_cancel.enabled")? {
        features["subscription_cancel"]["enabled"] = json!(enabled);
    }
    if let Some(mode) = p.str("features.subscription_cancel.mode")? {
        if !["at_period_end", "immediately"].contains(&mode.as_str()) {
            return Err(ApiError::invalid(
                "Invalid features[subscription_cancel][mode]",
                Some("features[subscription_cancel][mode]"),
            ));
        }
        features["subscription_cancel"]["mode"] = json!(mode);
    }
    let update = "features.subscription_update";
    if let Some(enabled) = p.bool(&format!("{update}.enabled"))? {
        features["subscription_update"]["enabled"] = json!(enabled);
    }
    if p.get(&format!("{update}.default_allowed_updates"))
        .is_some()
    {
        features["subscription_update"]["default_allowed_updates"] =
            json!(p.strings(&format!("{update}.default_allowed_updates"))?);
    }
    if let Some(behavior) = p.str(&format!("{update}.proration_behavior"))? {
        features["subscription_update"]["proration_behavior"] = json!(behavior);
    }
    if p.get(&format!("{update}.products")).is_some() {
        let mut products = Vec::new();
        for product in p.list(&format!("{update}.products"))? {
            let id = product.req_str("product")?;
            state.fetch(
                "product",
                &id,
                "features[subscription_update][products][][product]",
            )?;
            let prices = product.strings("prices")?;
            for price in &prices {
                let found = state.fetch(
                    "price",
                    price,
                    "features[subscription_update][products][][prices]",
                )?;
                if found["product"] != id.as_str() || found["type"] != "recurring" {
                    return Err(ApiError::invalid(
                        format!("The price {price} is not a recurring price of product {id}."),
                        Some("features[subscription_update][products]"),
                    ));
                }
            }
            products.push(json!({"product": id, "prices": prices, "adjustable_quantity": {"enabled": false, "maximum": null, "minimum": 1}}));
        }
        features["subscription_update"]["products"] = Value::Array(products);
    }
    configuration["updated"] = json!(state.now());
    Ok(state.insert("billing_portal.configuration", configuration))
}

/// `GET /v1/billing_portal/configurations` (`is_default`, `active`).
pub fn list_portals(state: &State, p: &Params) -> ApiResult {
    let is_default = p.bool("is_default")?;
    let active = p.bool("active")?;
    let items = state
        .all("billing_portal.configuration")
        .into_iter()
        .filter(|x| is_default.is_none_or(|d| x["is_default"] == d))
        .filter(|x| active.is_none_or(|a| x["active"] == a))
        .collect();
    paginate("/v1/billing_portal/configurations", items, p)
}

pub fn price(state: &State, id: &str, param: &str) -> ApiResult<Value> {
    state.fetch("price", id, param)
}

pub fn unit_amount(price: &Value) -> i64 {
    price["unit_amount"].as_i64().unwrap_or(0)
}

/// The legacy `plan` view of a recurring price, as subscription items still carry it.
pub fn plan_of(price: &Value) -> Value {
    let rec = &price["recurring"];
    json!({
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": "per_unit",
        "created": price["created"],
        "currency": price["currency"],
        "interval": rec["interval"],
        "interval_count": rec["interval_count"],
        "livemode": false,
        "metadata": {},
        "meter": null,
        "nickname": null,
        "product": price["product"],
        "tiers_mode": null,
        "transform_usage": null,
        "trial_period_days": null,
        "usage_type": "licensed",
    })
}

pub fn product_name(state: &State, price: &Value) -> String {
    price["product"]
        .as_str()
        .and_then(|p| state.get(p))
        .and_then(|p| p["name"].as_str())
        .unwrap_or("Item")
        .to_owned()
}

pub fn list_prices(state: &State, p: &Params) -> ApiResult {
    let product = p.str("product")?;
    let active = p.bool("active")?;
    let kind = p.str("type")?;
    let lookup_keys = p.strings("lookup_keys")?;
    if lookup_keys.len() > 10 {
        return Err(ApiError::invalid(
            "You may only specify up to 10 lookup keys.",
            Some("lookup_keys"),
        ));
    }
    let items = state
        .all("price")
        .into_iter()
        .filter(|x| {
            product
                .as_ref()
                .is_none_or(|id| x["product"] == id.as_str())
        })
        .filter(|x| active.is_none_or(|a| x["active"] == a))
        .filter(|x| kind.as_ref().is_none_or(|k| x["type"] == k.as_str()))
        .filter(|x| {
            lookup_keys.is_empty()
                || x["lookup_key"]
                    .as_str()
                    .is_some_and(|k| lookup_keys.iter().any(|l| l == k))
        })
        .collect();
    paginate("/v1/prices", items, p)
}

pub fn list_products(state: &State, p: &Params) -> ApiResult {
    let active = p.bool("active")?;
    let ids = p.strings("ids")?;
    let items = state
        .all("product")
        .into_iter()
        .filter(|x| active.is_none_or(|a| x["active"] == a))
        .filter(|x| {
            ids.is_empty()
                || x["id"]
                    .as_str()
                    .is_some_and(|id| ids.iter().any(|i| i == id))
        })
        .collect();
    paginate("/v1/products", items, p)
}

pub fn require_recurring(price: &Value, param: &str) -> ApiResult<()> {
    if price["type"] == "recurring" {
        Ok(())
    } else {
        Err(ApiError::invalid(
            format!(
                "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`: {}",
                price["id"].as_str().unwrap_or_default()
            ),
            Some(param),
        ))
    }
}
