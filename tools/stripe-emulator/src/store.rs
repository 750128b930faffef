//! The emulator's in-memory state: every Stripe object by id, the virtual clock, events and
//! the side data Stripe keeps but does not show (card behaviours, pending prorations).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngExt;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::wire::{ApiError, ApiResult};

/// What a test card does when it is attached or charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardBehavior {
    Succeeds,
    /// Declined on attach and on every charge (`4000000000000002`).
    Declines(DeclineCode),
    /// Attaches, but every charge is declined (`4000000000000341`).
    ChargeFails,
    /// Needs 3-D Secure for on-session payments; off-session charges succeed once set up
    /// (`4000002500003155`).
    Requires3ds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineCode {
    Generic,
    InsufficientFunds,
}

impl DeclineCode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineCode::Generic => "generic_decline",
            DeclineCode::InsufficientFunds => "insufficient_funds",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            DeclineCode::Generic => "Your card was declined.",
            DeclineCode::InsufficientFunds => "Your card has insufficient funds.",
        }
    }
}

/// A webhook endpoint, with its signing secret.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub secret: String,
    pub enabled_events: Vec<String>,
    pub object: Value,
}

/// One webhook delivery to perform: the serialized event for one endpoint.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub url: String,
    pub secret: String,
}

/// A stored response for an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct IdempotentResponse {
    pub fingerprint: String,
    pub status: u16,
    pub body: Value,
}

/// Checkout data Stripe keeps on the session but does not show unless expanded.
#[derive(Debug, Clone, Default)]
pub struct SessionMeta {
    pub line_items: Vec<(String, u64)>,
    pub subscription_metadata: Map<String, Value>,
    pub payment_intent_metadata: Map<String, Value>,
    /// The 3-D Secure card awaiting its challenge.
    pub pending_3ds_card: Option<String>,
}

pub struct State {
    /// Seconds added to the real clock to get emulator (business) time.
    pub clock_offset: i64,
    pub base_url: String,
    pub objects: HashMap<String, Value>,
    /// Ids per object type, oldest first.
    pub order: HashMap<&'static str, Vec<String>>,
    pub card_behavior: HashMap<String, CardBehavior>,
    /// Proration lines waiting for a subscription's next invoice.
    pub pending_lines: HashMap<String, Vec<Value>>,
    pub sessions: HashMap<String, SessionMeta>,
    pub events: Vec<Value>,
    pub endpoints: Vec<Endpoint>,
    pub idempotency: HashMap<String, IdempotentResponse>,
    pub deliveries: UnboundedSender<DeliveryJob>,
    /// The request (id, idempotency key) whose effects are being recorded, for events.
    pub current_request: Option<(String, Option<String>)>,
    pub invoice_counter: u64,
}

pub fn real_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A random Stripe-looking id: `cus_` followed by 24 alphanumerics.
pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}_{tail}")
}

pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl State {
    pub fn new(base_url: String, deliveries: UnboundedSender<DeliveryJob>) -> Self {
        Self {
            clock_offset: 0,
            base_url,
            objects: HashMap::new(),
            order: HashMap::new(),
            card_behavior: HashMap::new(),
            pending_lines: HashMap::new(),
            sessions: HashMap::new(),
            events: Vec::new(),
            endpoints: Vec::new(),
            idempotency: HashMap::new(),
            deliveries,
            current_request: None,
            invoice_counter: 0,
        }
    }

    /// Emulator time, in unix seconds.
    pub fn now(&self) -> i64 {
        real_now().saturating_add(self.clock_offset)
    }

    pub fn set_now(&mut self, t: i64) {
        self.clock_offset = t.saturating_sub(real_now());
    }

    pub fn insert(&mut self, kind: &'static str, obj: Value) -> Value {
        let id = obj["id"].as_str().unwrap_or_default().to_owned();
        if !self.objects.contains_key(&id) {
            self.order.entry(kind).or_default().push(id.clone());
        }
        self.objects.insert(id, obj.clone());
        obj
    }

    pub fn get(&self, id: &str) -> Option<&Value> {
        self.objects.get(id)
    }

    /// The object with this id if it is of the given `object` type, else Stripe's 404.
    pub fn fetch(&self, object: &str, id: &str, param: &str) -> ApiResult<Value> {
        self.objects
            .get(id)
            .filter(|o| o["object"] == object)
            .cloned()
            .ok_or_else(|| ApiError::no_such(object, id, param))
    }

    pub fn put(&mut self, obj: Value) {
        if let Some(id) = obj["id"].as_str() {
            self.objects.insert(id.to_owned(), obj);
        }
    }

    /// All objects of a kind, newest first (Stripe's list order).
    pub fn all(&self, kind: &str) -> Vec<Value> {
        self.order
            .get(kind)
            .map(|ids| {
                ids.iter()
                    .rev()
                    .filter_map(|id| self.objects.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records an event and queues its deliveries. `previous` holds the changed fields' old
    /// values for `*.updated` events.
    pub fn emit(&mut self, kind: &str, object: &Value, previous: Option<Value>) -> String {
        let id = new_id("evt");
        let mut data = json!({ "object": object });
        if let Some(prev) = previous {
            data["previous_attributes"] = prev;
        }
        let matching: Vec<Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| e.enabled_events.iter().any(|t| t == "*" || t == kind))
            .cloned()
            .collect();
        let (req_id, idem) = self
            .current_request
            .clone()
            .map(|(r, k)| (Some(r), k))
            .unwrap_or((None, None));
        let event = json!({
            "id": id,
            "object": "event",
            "api_version": crate::API_VERSION,
            "created": self.now(),
            "data": data,
            "livemode": false,
            "pending_webhooks": matching.len(),
            "request": { "id": req_id, "idempotency_key": idem },
            "type": kind,
        });
        let payload = serde_json::to_string_pretty(&event).unwrap_or_default();
        for endpoint in matching {
            // A closed channel only means the emulator is shutting down.
            let _ = self.deliveries.send(DeliveryJob {
                event_id: id.clone(),
                event_type: kind.to_owned(),
                payload: payload.clone(),
                url: endpoint.url,
                secret: endpoint.secret,
            });
        }
        self.events.push(event);
        id
    }

    /// Stores `new` and emits `<kind>.updated` with the top-level fields that changed.
    pub fn update_and_emit(&mut self, event_type: &str, old: &Value, new: Value) -> Value {
        self.put(new.clone());
        if let Some(prev) = previous_attributes(old, &new) {
            self.emit(event_type, &new, Some(prev));
        }
        new
    }

    /// Replaces id strings with the objects they name, along `expand[]` paths such as
    /// `latest_invoice`, `items.data.price.product` or `data.customer` on lists.
    pub fn expand(&self, value: &mut Value, paths: &[String]) {
        for path in paths {
            let parts: Vec<&str> = path.split('.').collect();
            self.expand_path(value, &parts, 0);
        }
    }

    fn expand_path(&self, value: &mut Value, parts: &[&str], depth: usize) {
        // Stripe caps expansion depth at four levels.
        if depth > 4 {
            return;
        }
        let Some((first, rest)) = parts.split_first() else {
            return;
        };
        if let Value::Array(items) = value {
            for item in items {
                self.expand_path(item, parts, depth);
            }
            return;
        }
        let Some(field) = value.get_mut(*first) else {
            return;
        };
        if let Value::String(id) = field
            && let Some(obj) = self.objects.get(id.as_str())
        {
            *field = obj.clone();
        }
        if !rest.is_empty() {
            self.expand_path(field, rest, depth + 1);
        }
    }
}

/// The old values of top-level fields that differ between two versions of an object.
pub fn previous_attributes(old: &Value, new: &Value) -> Option<Value> {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return None;
    };
    let mut prev = Map::new();
    for (k, v) in old {
        if new.get(k) != Some(v) {
            prev.insert(k.clone(), v.clone());
        }
    }
    (!prev.is_empty()).then_some(Value::Object(prev))
}
