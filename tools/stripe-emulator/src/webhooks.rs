//! Events, webhook endpoints, and signed asynchronous delivery with bounded retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::store::{DeliveryJob, Endpoint, State, new_id, random_token, real_now};
use crate::wire::{ApiError, ApiResult, Params, paginate};

/// Stripe's `Stripe-Signature` header for a payload signed at `timestamp` (real unix time).
pub fn sign(payload: &str, secret: &str, timestamp: i64) -> String {
    // HMAC takes keys of any length, so this never fails.
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("{timestamp}.{payload}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// One delivery attempt, as `GET /_emulator/deliveries` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryAttempt {
    pub event_id: String,
    pub event_type: String,
    pub url: String,
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub succeeded: bool,
    /// Real unix time of the attempt.
    pub at: i64,
    /// Whether another attempt will follow this failure.
    pub will_retry: bool,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub retry_base: Duration,
    pub max_attempts: u32,
    pub timeout: Duration,
}

pub type DeliveryLog = Arc<Mutex<Vec<DeliveryAttempt>>>;

/// Starts the dispatcher: deliveries to one URL are first attempted in event order; retries
/// run on their own so a failing endpoint never holds up the others or the API.
pub fn spawn_dispatcher(config: DeliveryConfig, log: DeliveryLog) -> UnboundedSender<DeliveryJob> {
    let (tx, mut rx) = unbounded_channel::<DeliveryJob>();
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    tokio::spawn(async move {
        let mut per_url: HashMap<String, UnboundedSender<DeliveryJob>> = HashMap::new();
        while let Some(job) = rx.recv().await {
            let sender = per_url.entry(job.url.clone()).or_insert_with(|| {
                let (utx, urx) = unbounded_channel();
                tokio::spawn(url_worker(urx, client.clone(), config.clone(), log.clone()));
                utx
            });
            let _ = sender.send(job);
        }
    });
    tx
}

async fn url_worker(
    mut rx: UnboundedReceiver<DeliveryJob>,
    client: reqwest::Client,
    config: DeliveryConfig,
    log: DeliveryLog,
) {
    while let Some(job) = rx.recv().await {
        let job = Arc::new(job);
        if !attempt(&client, &config, &log, &job, 1).await {
            let (client, config, log) = (client.clone(), config.clone(), log.clone());
            tokio::spawn(async move {
                for n in 2..=config.max_attempts {
                    let factor = 2u32.saturating_pow(n.saturating_sub(2));
                    tokio::time::sleep(config.retry_base.saturating_mul(factor)).await;
                    if attempt(&client, &config, &log, &job, n).await {
                        break;
                    }
                }
            });
        }
    }
}

async fn attempt(
    client: &reqwest::Client,
    config: &DeliveryConfig,
    log: &DeliveryLog,
    job: &DeliveryJob,
    n: u32,
) -> bool {
    let signature = sign(&job.payload, &job.secret, real_now());
    let result = client
        .post(&job.url)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Stripe-Signature", signature)
        .header(
            "User-Agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        )
        .body(job.payload.clone())
        .send()
        .await;
    let (status_code, error, succeeded) = match result {
        Ok(resp) => {
            let code = resp.status().as_u16();
            let ok = resp.status().is_success();
            (Some(code), (!ok).then(|| format!("HTTP {code}")), ok)
        }
        Err(e) => (
            None,
            Some(if e.is_timeout() {
                "timeout".to_owned()
            } else {
                e.to_string()
            }),
            false,
        ),
    };
    let will_retry = !succeeded && n < config.max_attempts;
    if !succeeded {
        tracing::warn!(event = %job.event_id, url = %job.url, attempt = n, ?error, "webhook delivery failed");
    }
    if let Ok(mut log) = log.lock() {
        log.push(DeliveryAttempt {
            event_id: job.event_id.clone(),
            event_type: job.event_type.clone(),
            url: job.url.clone(),
            attempt: n,
            status_code,
            error,
            succeeded,
            at: real_now(),
            will_retry,
        });
    }
    succeeded
}

pub fn new_secret() -> String {
    format!("whsec_{}", random_token(32))
}

pub fn add_endpoint(
    state: &mut State,
    url: String,
    secret: String,
    enabled_events: Vec<String>,
    description: Option<String>,
) -> Value {
    let id = new_id("we");
    let object = json!({
        "id": id,
        "object": "webhook_endpoint",
        "api_version": crate::API_VERSION,
        "application": null,
        "created": state.now(),
        "description": description,
        "enabled_events": enabled_events,
        "livemode": false,
        "metadata": {},
        "status": "enabled",
        "url": url,
    });
    state.endpoints.push(Endpoint {
        id,
        url,
        secret: secret.clone(),
        enabled_events,
        object: object.clone(),
    });
    let mut shown = object;
    shown["secret"] = json!(secret);
    shown
}

fn validate_url(url: &str) -> ApiResult<()> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "Invalid URL: URL must be an absolute http(s) URL.",
            Some("url"),
        ))
    }
}

pub fn create_endpoint(state: &mut State, p: &Params) -> ApiResult {
    let url = p.req_str("url")?;
    validate_url(&url)?;
    let events = p.strings("enabled_events")?;
    if events.is_empty() {
        return Err(ApiError::missing("enabled_events"));
    }
    let secret = new_secret();
    Ok(add_endpoint(
        state,
        url,
        secret,
        events,
        p.str("description")?,
    ))
}

fn endpoint_index(state: &State, id: &str) -> ApiResult<usize> {
    state
        .endpoints
        .iter()
        .position(|e| e.id == id)
        .ok_or_else(|| ApiError::no_such("webhook_endpoint", id, "id"))
}

pub fn retrieve_endpoint(state: &State, id: &str) -> ApiResult {
    Ok(state.endpoints[endpoint_index(state, id)?].object.clone())
}

pub fn update_endpoint(state: &mut State, id: &str, p: &Params) -> ApiResult {
    let i = endpoint_index(state, id)?;
    let url = p.str("url")?;
    if let Some(url) = &url {
        validate_url(url)?;
    }
    let events = p.strings("enabled_events")?;
    let disabled = p.bool("disabled")?;
    let e = &mut state.endpoints[i];
    if let Some(url) = url {
        e.object["url"] = json!(url);
        e.url = url;
    }
    if !events.is_empty() {
        e.object["enabled_events"] = json!(events);
        e.enabled_events = events;
    }
    if let Some(d) = disabled {
        e.object["status"] = json!(if d { "disabled" } else { "enabled" });
        if d {
            e.enabled_events.clear();
        } else if let Some(ev) = e.object["enabled_events"].as_array() {
            e.enabled_events = ev
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
        }
    }
    Ok(e.object.clone())
}

pub fn delete_endpoint(state: &mut State, id: &str) -> ApiResult {
    let i = endpoint_index(state, id)?;
    state.endpoints.remove(i);
    Ok(json!({ "id": id, "object": "webhook_endpoint", "deleted": true }))
}

pub fn list_endpoints(state: &State, p: &Params) -> ApiResult {
    let items = state
        .endpoints
        .iter()
        .rev()
        .map(|e| e.object.clone())
        .collect();
    paginate("/v1/webhook_endpoints", items, p)
}

/// Stripe's range filter on `created`: `created=<t>` or `created[gt|gte|lt|lte]=<t>`.
fn created_filter(p: &Params) -> ApiResult<impl Fn(i64) -> bool> {
    let exact = match p.get("created") {
        Some(serde_json::Value::Object(_)) | None => None,
        Some(_) => p.int("created")?,
    };
    let (gt, gte, lt, lte) = if exact.is_some() {
        (None, None, None, None)
    } else {
        (
            p.int("created.gt")?,
            p.int("created.gte")?,
            p.int("created.lt")?,
            p.int("created.lte")?,
        )
    };
    Ok(move |t: i64| {
        exact.is_none_or(|x| t == x)
            && gt.is_none_or(|x| t > x)
            && gte.is_none_or(|x| t >= x)
            && lt.is_none_or(|x| t < x)
            && lte.is_none_or(|x| t <= x)
    })
}

pub fn list_events(state: &State, p: &Params) -> ApiResult {
    let kind = p.str("type")?;
    let types = p.strings("types")?;
    let created = created_filter(p)?;
    let items = state
        .events
        .iter()
        .rev()
        .filter(|e| created(e["created"].as_i64().unwrap_or_default()))
        .filter(|e| {
            let t = e["type"].as_str().unwrap_or_default();
            kind.as_ref().is_none_or(|k| match k.strip_suffix('*') {
                Some(prefix) => t.starts_with(prefix),
                None => t == k,
            }) && (types.is_empty() || types.iter().any(|x| x == t))
        })
        .cloned()
        .collect();
    paginate("/v1/events", items, p)
}

pub fn retrieve_event(state: &State, id: &str) -> ApiResult {
    state
        .events
        .iter()
        .find(|e| e["id"] == id)
        .cloned()
        .ok_or_else(|| ApiError::no_such("event", id, "id"))
}
