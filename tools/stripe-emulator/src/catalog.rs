//! Products and prices, seeded from the project's catalog (`shared::catalog`).

use serde_json::{Value, json};

use crate::store::{State, new_id};
use crate::wire::{ApiError, ApiResult, Params, paginate};

struct Seed {
    price_id: &'static str,
    name: &'static str,
    cents: i64,
    /// `Some("month")` for recurring prices.
    interval: Option<&'static str>,
}

fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    for tier in shared::catalog::TIERS.iter() {
        if let Some(price_id) = tier.stripe_price_id {
            out.push(Seed {
                price_id,
                name: tier.name,
                cents: tier.price_cents,
                interval: Some(tier.interval),
            });
        }
    }
    for pack in shared::catalog::PACKS.iter() {
        out.push(Seed {
            price_id: pack.stripe_price_id,
            name: pack.name,
            cents: pack.price_cents,
            interval: None,
        });
    }
    let report = &shared::catalog::REPORT;
    out.push(Seed {
        price_id: report.stripe_price_id,
        name: report.name,
        cents: report.price_cents,
        interval: None,
    });
    out
}

pub fn seed(state: &mut State) {
    let now = state.now();
    let currency = shared::catalog::CURRENCY.to_ascii_lowercase();
    for s in seeds() {
        let product_id = new_id("prod");
        let product = json!({
            "id": product_id,
            "object": "product",
            "active": true,
            "created": now,
            "default_price": s.price_id,
            "description": null,
            "images": [],
            "livemode": false,
            "marketing_features": [],
            "metadata": {},
            "name": s.name,
            "package_dimensions": null,
            "shippable": null,
            "statement_descriptor": null,
            "tax_code": null,
            "type": "service",
            "unit_label": null,
            "updated": now,
            "url": null,
        });
        let recurring = s.interval.map(|i| {
            json!({
                "interval": i,
                "interval_count": 1,
                "meter": null,
                "trial_period_days": null,
                "usage_type": "licensed",
            })
        });
        let price = json!({
            "id": s.price_id,
            "object": "price",
            "active": true,
            "billing_scheme": "per_unit",
            "created": now,
            "currency": currency,
            "custom_unit_amount": null,
            "livemode": false,
            "lookup_key": null,
            "metadata": {},
            "nickname": null,
            "product": product_id,
            "recurring": recurring,
            "tax_behavior": "unspecified",
            "tiers_mode": null,
            "transform_quantity": null,
            "type": if s.interval.is_some() { "recurring" } else { "one_time" },
            "unit_amount": s.cents,
            "unit_amount_decimal": s.cents.to_string(),
        });
        state.insert("product", product);
        state.insert("price", price);
    }
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
        .collect();
    paginate("/v1/prices", items, p)
}

pub fn list_products(state: &State, p: &Params) -> ApiResult {
    let active = p.bool("active")?;
    let items = state
        .all("product")
        .into_iter()
        .filter(|x| active.is_none_or(|a| x["active"] == a))
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
