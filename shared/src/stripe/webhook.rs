//! What Stripe sends us, checked and read: the `Stripe-Signature` check of a webhook
//! delivery ([`verify`]), an event's envelope ([`Event`]), and the typed view of the objects
//! the events we handle are about ([`SessionView`] for Checkout Sessions, [`Event::customer`]
//! and [`Event::owner`] for subscriptions and invoices).

use super::checkout::{Metadata, NotAnOrder, Order, Owner};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

/// How far a signature's timestamp may be from now (Stripe's default tolerance).
pub const TOLERANCE_SECS: i64 = 300;

/// Why a delivery's signature was refused (the API answers 400 `invalid_signature`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("The Stripe-Signature header does not match the payload.")]
    Mismatch,
    #[error("The signature is older than 300 seconds.")]
    TooOld,
    /// Our configuration, not the sender: the secret cannot key an HMAC.
    #[error("the webhook secret cannot key an HMAC")]
    BadSecret,
}

/// Checks `Stripe-Signature` as Stripe specifies (<https://docs.stripe.com/webhooks#verify-manually>):
/// the header is `t=<unix time>,v1=<hex>[,v1=<hex>…]`; one `v1` must be the HMAC-SHA256, under
/// the endpoint's secret, of `<t>.<payload>`, compared in constant time; then `t` must be
/// within [`TOLERANCE_SECS`] of now. async-stripe's `construct_event` does the same and then
/// parses the event into its complete types — a parser for every event type Stripe has,
/// which alone would be most of the webhook's bootstrap. We need only the check (the tests
/// sign with async-stripe's own signer) and read the few fields we use ourselves.
pub fn verify(
    payload: &str,
    header: &str,
    secret: &str,
    now_unix: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for pair in header.split(',') {
        match pair.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", signature)) => candidates.push(signature),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Mismatch)?;
    let signed_at: i64 = t.parse().map_err(|_| SignatureError::Mismatch)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| SignatureError::BadSecret)?;
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    let signed = candidates.iter().any(|candidate| {
        hex::decode(candidate).is_ok_and(|signature| mac.clone().verify_slice(&signature).is_ok())
    });
    if !signed {
        return Err(SignatureError::Mismatch);
    }
    if (now_unix - signed_at).abs() > TOLERANCE_SECS {
        return Err(SignatureError::TooOld);
    }
    Ok(())
}

/// A Stripe event, reduced to what we read.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub type_: String,
    /// When Stripe created the event (unix s): when what it reports happened.
    pub created: i64,
    /// The Stripe object the event is about, as Stripe sent it.
    pub object: Value,
}

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    type_: String,
    #[serde(default)]
    created: i64,
    data: EnvelopeData,
}

#[derive(Deserialize)]
struct EnvelopeData {
    object: Value,
}

/// An id field that Stripe sends as an id, or as the object when expanded.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdOrObject {
    Id(String),
    Object { id: String },
}

impl IdOrObject {
    fn id(self) -> String {
        match self {
            IdOrObject::Id(id) | IdOrObject::Object { id } => id,
        }
    }
}

/// The fields of a subscription, an invoice or a Checkout Session that say whose it is.
#[derive(Deserialize)]
struct Owned {
    customer: Option<IdOrObject>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

impl Event {
    /// Reads an event as Stripe sends it (a webhook body).
    pub fn parse(payload: &str) -> Result<Self, serde_json::Error> {
        let e: Envelope = serde_json::from_str(payload)?;
        Ok(Self {
            id: e.id,
            type_: e.type_,
            created: e.created,
            object: e.data.object,
        })
    }

    /// Reads an event of Stripe's event list (`GET /v1/events`); `None` if it has not the
    /// shape of one.
    pub fn from_json(value: &Value) -> Option<Self> {
        let e: Envelope = serde_json::from_value(value.clone()).ok()?;
        Some(Self {
            id: e.id,
            type_: e.type_,
            created: e.created,
            object: e.data.object,
        })
    }

    fn owned(&self) -> Option<Owned> {
        serde_json::from_value(self.object.clone()).ok()
    }

    /// The customer the object names (a subscription, an invoice, a Checkout Session).
    pub fn customer(&self) -> Option<String> {
        self.owned()?.customer.map(IdOrObject::id)
    }

    /// Whose the object is, by the metadata our flows put on it.
    pub fn owner(&self) -> Option<Owner> {
        Owner::from_metadata(self.owned()?.metadata.as_ref()?)
    }

    /// The object as a Checkout Session; `None` when it is not one.
    pub fn session(&self) -> Option<SessionView> {
        let wire: SessionWire = serde_json::from_value(self.object.clone()).ok()?;
        (wire.object == "checkout.session").then(|| SessionView {
            order: Order::from_metadata(&wire.metadata.unwrap_or_default()),
            id: wire.id,
            mode: wire.mode,
            paid: wire.payment_status.as_deref() == Some("paid"),
            created: wire.created,
            customer: wire.customer.map(IdOrObject::id),
            subscription: wire.subscription.map(IdOrObject::id),
        })
    }
}

#[derive(Deserialize)]
struct SessionWire {
    id: String,
    object: String,
    mode: Option<String>,
    payment_status: Option<String>,
    #[serde(default)]
    created: i64,
    customer: Option<IdOrObject>,
    subscription: Option<IdOrObject>,
    metadata: Option<Metadata>,
}

/// A Checkout Session, as the events about it carry it, reduced to what we read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub id: String,
    /// `subscription` or `payment` (Stripe's `mode`).
    pub mode: Option<String>,
    /// Whether Stripe says it is paid (`payment_status: paid`).
    pub paid: bool,
    /// When Stripe created the session (unix s).
    pub created: i64,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    /// What it buys, for whom, from its metadata.
    pub order: Result<Order, NotAnOrder>,
}

impl SessionView {
    /// Whether it is a one-time payment (a credit pack, the report).
    pub fn is_payment(&self) -> bool {
        self.mode.as_deref() == Some("payment")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PackType;
    use crate::stripe::checkout::Purpose;
    use serde_json::json;
    use stripe_webhook::Webhook;

    const SECRET: &str = "whsec_test_secret";
    const NOW: i64 = 1_700_000_000;
    const PAYLOAD: &str = r#"{"id":"evt_1","type":"invoice.paid","data":{"object":{}}}"#;

    fn signed(payload: &str, at: i64) -> String {
        Webhook::generate_test_header(payload, SECRET, Some(at))
    }

    #[test]
    fn accepts_what_async_stripe_signs() {
        assert_eq!(verify(PAYLOAD, &signed(PAYLOAD, NOW), SECRET, NOW), Ok(()));
        assert_eq!(
            verify(PAYLOAD, &signed(PAYLOAD, NOW - 299), SECRET, NOW),
            Ok(())
        );
        // Several v1 signatures (a secret being rolled): any one may match.
        let header = signed(PAYLOAD, NOW);
        let rolled = header.replacen(",v1=", ",v1=00ff,v1=", 1);
        assert_eq!(verify(PAYLOAD, &rolled, SECRET, NOW), Ok(()), "{rolled}");
    }

    #[test]
    fn refuses_another_payload_secret_or_signature() {
        let header = signed(PAYLOAD, NOW);
        let other = PAYLOAD.replace("evt_1", "evt_2");
        assert_eq!(
            verify(&other, &header, SECRET, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(PAYLOAD, &header, "whsec_other", NOW),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            "",
            "t=1700000000",
            "v1=abc",
            "t=x,v1=00",
            "garbage",
            "t=1700000000,v1=zz",
        ] {
            assert_eq!(
                verify(PAYLOAD, bad, SECRET, NOW),
                Err(SignatureError::Mismatch),
                "{bad}"
            );
        }
        // The timestamp is part of what is signed.
        let moved = header.replacen(&format!("t={NOW}"), &format!("t={}", NOW + 1), 1);
        assert_eq!(
            verify(PAYLOAD, &moved, SECRET, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn refuses_a_signature_older_or_newer_than_the_tolerance() {
        let old = signed(PAYLOAD, NOW - TOLERANCE_SECS - 1);
        assert_eq!(
            verify(PAYLOAD, &old, SECRET, NOW),
            Err(SignatureError::TooOld)
        );
        let future = signed(PAYLOAD, NOW + TOLERANCE_SECS + 1);
        assert_eq!(
            verify(PAYLOAD, &future, SECRET, NOW),
            Err(SignatureError::TooOld)
        );
    }

    #[test]
    fn events_and_sessions_read_as_stripe_sends_them() {
        let order = Order::new(
            Owner {
                account_id: "acct_1".into(),
                subject: "user#u1".into(),
            },
            Purpose::CreditPack(PackType::Medium),
        );
        let body = json!({"id": "evt_1", "object": "event", "type": "checkout.session.completed",
            "created": 1_700_000_000, "data": {"object": {
                "id": "cs_1", "object": "checkout.session", "mode": "payment",
                "payment_status": "paid", "created": 1_699_999_000,
                "customer": {"id": "cus_1", "object": "customer"}, "subscription": null,
                "metadata": order.to_metadata()}}});
        let event = Event::parse(&body.to_string()).expect("an event");
        assert_eq!(Event::from_json(&body), Some(event.clone()));
        assert_eq!(
            (event.id.as_str(), event.type_.as_str(), event.created),
            ("evt_1", "checkout.session.completed", 1_700_000_000)
        );
        let session = event.session().expect("a session");
        assert_eq!(
            session,
            SessionView {
                id: "cs_1".into(),
                mode: Some("payment".into()),
                paid: true,
                created: 1_699_999_000,
                customer: Some("cus_1".into()),
                subscription: None,
                order: Ok(order.clone()),
            }
        );
        assert!(session.is_payment());
        assert_eq!(event.customer().as_deref(), Some("cus_1"));
        assert_eq!(event.owner(), Some(order.owner));
        // Not a session; no metadata; not an event.
        let invoice = Event {
            object: json!({"id": "in_1", "object": "invoice", "customer": "cus_2"}),
            ..event
        };
        assert_eq!(invoice.session(), None);
        assert_eq!(invoice.customer().as_deref(), Some("cus_2"));
        assert_eq!(invoice.owner(), None);
        assert!(Event::parse(r#"{"id": "evt_1"}"#).is_err());
        assert_eq!(Event::from_json(&json!({"type": "x"})), None);
    }
}
