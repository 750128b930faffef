//! Billing portal sessions (the API side; the page is in `pages`).

use serde_json::{Value, json};

use crate::store::{State, new_id};
use crate::wire::{ApiError, ApiResult, Params};

/// The single portal configuration the emulator has.
const CONFIGURATION: &str = "bpc_emulator_default";

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
