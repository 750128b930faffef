//! Billing portal sessions (the API side; the page is in `pages`).

use serde_json::{Value, json};

use crate::store::{State, new_id};
use crate::wire::{ApiError, ApiResult, Params};

/// The default portal configuration (`catalog::seed_portal`); `admin stripe-sync` sets its
/// features.
const CONFIGURATION: &str = "bpc_emulator_default";

/// The prices the default configuration lets customers switch between, when plan
/// switching is on.
pub fn switch_prices(state: &State) -> Vec<String> {
    let update = state
        .get(CONFIGURATION)
        .map(|c| c["features"]["subscription_update"].clone())
        .unwrap_or(Value::Null);
    if update["enabled"] != true {
        return Vec::new();
    }
    update["products"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["prices"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect()
}

/// How a plan switch in the portal is prorated (the configuration's setting).
pub fn switch_proration(state: &State) -> String {
    state
        .get(CONFIGURATION)
        .and_then(|c| c["features"]["subscription_update"]["proration_behavior"].as_str())
        .unwrap_or("create_prorations")
        .to_owned()
}

pub fn create(state: &mut State, p: &Params) -> ApiResult {
    let customer = p.req_str("customer")?;
    state.fetch("customer", &customer, "customer")?;
    let return_url = p.str("return_url")?;
    if let Some(url) = &return_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(ApiError::invalid("Not a valid URL", Some("return_url")));
    }
    let id = new_id("bps");
    let session = json!({
        "id": id,
        "object": "billing_portal.session",
        "configuration": p.str("configuration")?.unwrap_or_else(|| CONFIGURATION.to_owned()),
        "created": state.now(),
        "customer": customer,
        "customer_account": null,
        "flow": null,
        "livemode": false,
        "locale": p.str("locale")?,
        "on_behalf_of": null,
        "return_url": return_url,
        "url": format!("{}/p/session/{id}", state.base_url),
    });
    Ok(state.insert("billing_portal.session", session))
}

pub fn session(state: &State, id: &str) -> Option<Value> {
    state
        .get(id)
        .filter(|s| s["object"] == "billing_portal.session")
        .cloned()
}
