//! The Stripe adapter: the only module that speaks to Stripe (async-stripe 1.0). Handlers
//! call these few operations and get our own types and errors back. Every call that creates
//! or changes something carries an idempotency key chosen by the caller.
//!
//! Requests are async-stripe's typed builders; responses are read into the few fields we use
//! ([`wire`]), not into async-stripe's complete objects: their generated parsers (a
//! subscription reaches invoices, payment methods and dozens of payment-method details) would
//! double every function's bootstrap. The emulator's tests check that the objects it serves
//! parse into async-stripe's complete types.

use crate::catalog::Tier;
use crate::subscriptions::SubscriptionStatus;
use checkout::{Order, Owner, PriceChange};
use client::{ClientError, HttpClient};
use std::collections::HashMap;
use std::time::Duration;
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::invoice::{
    CreatePreviewInvoice, CreatePreviewInvoiceSubscriptionDetails,
    CreatePreviewInvoiceSubscriptionDetailsItems,
    CreatePreviewInvoiceSubscriptionDetailsProrationBehavior, RetrieveInvoice,
};
use stripe_billing::subscription::{
    CreateSubscription, CreateSubscriptionItems, CreateSubscriptionPaymentBehavior,
    ListSubscription, ListSubscriptionStatus, RetrieveSubscription, UpdateSubscription,
    UpdateSubscriptionItems, UpdateSubscriptionPaymentBehavior,
    UpdateSubscriptionProrationBehavior,
};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionPaymentIntentData,
    CreateCheckoutSessionSubscriptionData, ExpireCheckoutSession, RetrieveCheckoutSession,
};
use stripe_client_core::{RequestStrategy, StripeRequest};
use stripe_core::customer::{
    CreateCustomer, RetrieveCustomer, UpdateCustomer, UpdateCustomerInvoiceSettings,
};
use stripe_core::event::ListEvent;
use stripe_shared::CheckoutSessionMode;

pub mod checkout;
mod client;
pub mod webhook;
pub use client::{MIN_CALL, with_budget};

/// The API's route for Stripe's webhook deliveries.
pub const WEBHOOK_PATH: &str = "/v1/webhooks/stripe";

/// How a Stripe call failed, in the terms the API answers with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StripeFailure {
    /// A card error: declined, authentication required, no payment method. Stripe's message.
    #[error("card error: {0}")]
    Card(String),
    /// The object does not exist in Stripe.
    #[error("not found in Stripe: {0}")]
    NotFound(String),
    /// Stripe refused our request as invalid: a bug on our side.
    #[error("Stripe refused the request: {0}")]
    Refused(String),
    /// Stripe refused a value the API's caller gave us (an email Stripe will not take):
    /// `param` is both Stripe's parameter and the API's field.
    #[error("Stripe refused {param}: {message}")]
    InvalidInput { param: String, message: String },
    /// Stripe did not answer, or answered 5xx / 429.
    #[error("Stripe unavailable: {0}")]
    Unavailable(String),
}

/// Parameters whose values come straight from the API's callers, named as the API's own
/// fields: when Stripe refuses one of them, the caller gets a 400 naming it, not a 500.
const CALLER_PARAMS: [&str; 4] = ["customer_email", "success_url", "cancel_url", "return_url"];

pub(crate) fn failure(e: ClientError) -> StripeFailure {
    match e {
        ClientError::Stripe {
            status,
            kind,
            message,
            param,
            code,
        } => {
            let message = message.unwrap_or_else(|| format!("Stripe error {status}"));
            match status {
                402 => StripeFailure::Card(message),
                404 => StripeFailure::NotFound(message),
                // An object named in a parameter that Stripe does not have (a deleted
                // customer in a list's filter): Stripe answers 400 `resource_missing`.
                400 if code.as_deref() == Some("resource_missing") => {
                    StripeFailure::NotFound(message)
                }
                400 if param.as_deref().is_some_and(|p| CALLER_PARAMS.contains(&p)) => {
                    StripeFailure::InvalidInput {
                        param: param.unwrap_or_default(),
                        message,
                    }
                }
                // 409: a concurrent request under the same Idempotency-Key; retrying helps.
                409 | 429 | 500.. => StripeFailure::Unavailable(format!("{status}: {message}")),
                _ if kind == "card_error" => StripeFailure::Card(message),
                _ => StripeFailure::Refused(format!("{status}: {message}")),
            }
        }
        other => StripeFailure::Unavailable(other.to_string()),
    }
}

/// Sends an async-stripe request: one attempt, under `key` (an `Option<&str>`) when given,
/// with Stripe's failures mapped to ours, and the answer read as `$output` (a [`wire`] type).
/// Each call is measured: `StripeCalls` by operation (the request type's name,
/// `CreateCheckoutSession`) and outcome, and `StripeLatency` (`crate::metrics`).
macro_rules! send {
    ($self:ident, $request:expr, $key:expr, $output:ty) => {{
        let request = $request;
        let operation = $crate::stripe::operation_name(&request);
        let started = std::time::Instant::now();
        let result = match $self.client.as_deref() {
            Some(client) => request
                .build()
                .customize::<$output>()
                .request_strategy($crate::stripe::strategy($key))
                .send(client)
                .await
                .map_err($crate::stripe::failure),
            None => Err($crate::stripe::StripeFailure::Refused(
                $crate::stripe::NO_KEY.into(),
            )),
        };
        $crate::metrics::stripe_call(
            operation,
            $crate::stripe::outcome(&result),
            started.elapsed(),
        );
        result
    }};
}

/// The request type's own name: `CreateCheckoutSession` for
/// `stripe_checkout::checkout_session::CreateCheckoutSession`.
pub(crate) fn operation_name<T>(_: &T) -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

pub(crate) fn outcome<T>(result: &Result<T, StripeFailure>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(StripeFailure::Card(_)) => "card_error",
        Err(StripeFailure::NotFound(_)) => "not_found",
        Err(StripeFailure::Refused(_)) => "refused",
        Err(StripeFailure::InvalidInput { .. }) => "invalid_input",
        Err(StripeFailure::Unavailable(_)) => "unavailable",
    }
}

pub mod prices;

/// The fields of Stripe's objects that we read (unknown fields are skipped, missing optional
/// ones are `None`). Names and shapes are Stripe's, API version 2026-09-30.
mod wire {
    use miniserde::Deserialize;
    use std::collections::HashMap;

    #[derive(Deserialize)]
    pub struct Object {
        pub id: String,
    }

    #[derive(Deserialize)]
    pub struct Customer {
        pub deleted: Option<bool>,
        pub invoice_settings: Option<InvoiceSettings>,
    }

    #[derive(Deserialize)]
    pub struct InvoiceSettings {
        /// An id: we never expand it.
        pub default_payment_method: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct CheckoutSession {
        pub id: String,
        pub url: Option<String>,
        pub created: i64,
    }

    #[derive(Deserialize)]
    pub struct PortalSession {
        pub url: String,
    }

    #[derive(Deserialize)]
    pub struct SessionStatus {
        pub status: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct SubscriptionList {
        pub data: Vec<Subscription>,
        pub has_more: bool,
    }

    #[derive(Deserialize)]
    pub struct EventList {
        pub data: Vec<miniserde::json::Value>,
        pub has_more: bool,
    }

    #[derive(Deserialize)]
    pub struct Subscription {
        pub id: String,
        /// An id: we never expand it.
        pub customer: String,
        /// An id: we never expand it. Checkout puts the card it collected here.
        pub default_payment_method: Option<String>,
        pub status: String,
        pub items: SubscriptionItems,
        pub cancel_at_period_end: bool,
        pub created: i64,
        pub metadata: Option<HashMap<String, String>>,
    }

    #[derive(Deserialize)]
    pub struct SubscriptionItems {
        pub data: Vec<SubscriptionItem>,
    }

    #[derive(Deserialize)]
    pub struct SubscriptionItem {
        pub id: String,
        pub price: PriceRef,
        pub current_period_start: i64,
        pub current_period_end: i64,
    }

    /// A subscription item's price: which catalog item it sells.
    #[derive(Deserialize)]
    pub struct PriceRef {
        pub id: String,
        pub lookup_key: Option<String>,
        pub metadata: Option<HashMap<String, String>>,
    }

    #[derive(Deserialize)]
    pub struct Price {
        pub id: String,
        pub active: bool,
        pub currency: String,
        pub unit_amount: Option<i64>,
        pub lookup_key: Option<String>,
        /// An id: we never expand it.
        pub product: String,
        pub recurring: Option<Recurring>,
        pub metadata: Option<HashMap<String, String>>,
    }

    #[derive(Deserialize)]
    pub struct Recurring {
        pub interval: String,
    }

    #[derive(Deserialize)]
    pub struct PriceList {
        pub data: Vec<Price>,
    }

    #[derive(Deserialize)]
    pub struct Product {
        pub id: String,
        pub name: String,
        pub active: bool,
    }

    #[derive(Deserialize)]
    pub struct ProductList {
        pub data: Vec<Product>,
    }

    #[derive(Deserialize)]
    pub struct PortalList {
        pub data: Vec<PortalConfiguration>,
    }

    #[derive(Deserialize)]
    pub struct PortalConfiguration {
        pub id: String,
        pub features: PortalFeatures,
    }

    #[derive(Deserialize)]
    pub struct PortalFeatures {
        pub subscription_cancel: PortalCancel,
        pub subscription_update: PortalUpdate,
    }

    #[derive(Deserialize)]
    pub struct PortalCancel {
        pub enabled: bool,
        pub mode: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct PortalUpdate {
        pub enabled: bool,
        pub default_allowed_updates: Vec<String>,
        pub proration_behavior: Option<String>,
        pub products: Option<Vec<PortalProduct>>,
    }

    #[derive(Deserialize)]
    pub struct PortalProduct {
        pub product: String,
        pub prices: Vec<String>,
    }

    #[derive(Deserialize)]
    pub struct InvoicePreview {
        pub lines: InvoiceLines,
    }

    #[derive(Deserialize)]
    pub struct InvoiceLines {
        pub data: Vec<InvoiceLine>,
    }

    #[derive(Deserialize)]
    pub struct InvoiceLine {
        pub amount: i64,
        pub parent: Option<InvoiceLineParent>,
    }

    #[derive(Deserialize)]
    pub struct InvoiceLineParent {
        pub subscription_item_details: Option<ProrationFlag>,
        pub invoice_item_details: Option<ProrationFlag>,
    }

    #[derive(Deserialize)]
    pub struct ProrationFlag {
        pub proration: bool,
    }

    /// An invoice retrieved with `payments.data.payment.payment_intent` expanded.
    #[derive(Deserialize)]
    pub struct InvoicePayments {
        pub payments: Option<PaymentList>,
    }

    #[derive(Deserialize)]
    pub struct PaymentList {
        pub data: Vec<InvoicePayment>,
    }

    #[derive(Deserialize)]
    pub struct InvoicePayment {
        pub payment: Payment,
    }

    #[derive(Deserialize)]
    pub struct Payment {
        pub payment_intent: Option<PaymentIntent>,
    }

    #[derive(Deserialize)]
    pub struct PaymentIntent {
        pub last_payment_error: Option<PaymentError>,
    }

    #[derive(Deserialize)]
    pub struct PaymentError {
        pub message: Option<String>,
    }
}

/// One attempt, under the caller's idempotency key when it has one. Keys we derive are hex
/// digests, always valid; an invalid one falls back to a plain single attempt.
pub(crate) fn strategy(idempotency_key: Option<&str>) -> RequestStrategy {
    idempotency_key
        .and_then(|key| stripe_client_core::IdempotencyKey::new(key).ok())
        .map(RequestStrategy::Idempotent)
        .unwrap_or(RequestStrategy::Once)
}

/// A Checkout Session as the API answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutLink {
    pub session_id: String,
    pub url: String,
    /// When Stripe created the session (unix s).
    pub created: i64,
}

/// What a Checkout Session is for; the webhook reads it back from the metadata.
#[derive(Debug, Clone)]
pub struct CheckoutRequest<'a> {
    pub customer: Option<&'a str>,
    pub customer_email: Option<&'a str>,
    pub price_id: &'a str,
    pub mode: CheckoutMode,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
    pub client_reference_id: &'a str,
    /// What the session buys, for whom: its metadata (and its subscription's or payment's).
    pub order: &'a Order,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutMode {
    Subscription,
    Payment,
}

/// The state of a subscription as Stripe reports it, reduced to what we keep.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionSnapshot {
    pub id: String,
    pub customer_id: String,
    pub status: SubscriptionStatus,
    pub tier: Option<Tier>,
    pub item_id: Option<String>,
    pub price_id: Option<String>,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub created: i64,
    pub metadata: HashMap<String, String>,
    pub default_payment_method: Option<String>,
}

impl SubscriptionSnapshot {
    /// Whether the subscription has not ended ([`SubscriptionStatus::is_live`]).
    pub fn is_live(&self) -> bool {
        self.status.is_live()
    }
}

/// How an open Checkout Session ended when we asked Stripe to expire it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// It can no longer be paid.
    Expired,
    /// It had been paid (or completed) first: what it bought exists.
    Completed,
}

/// One page of Stripe's events, oldest first, each as Stripe sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<serde_json::Value>,
    /// The cursor for the next page (Stripe's `starting_after`), when there is one.
    pub next: Option<String>,
}

impl TryFrom<wire::Subscription> for SubscriptionSnapshot {
    type Error = StripeFailure;

    /// A status outside Stripe's documented set is refused, never guessed at.
    fn try_from(s: wire::Subscription) -> Result<Self, StripeFailure> {
        let status = SubscriptionStatus::parse(&s.status).ok_or_else(|| {
            StripeFailure::Refused(format!(
                "subscription {}: unknown status `{}`",
                s.id, s.status
            ))
        })?;
        // Current API: the billing period lives on the subscription items.
        let item = s.items.data.into_iter().next();
        let price_id = item.as_ref().map(|i| i.price.id.clone());
        let tier = item.as_ref().and_then(|i| {
            let catalog_key = i
                .price
                .metadata
                .as_ref()
                .and_then(|m| m.get(prices::CATALOG_KEY));
            prices::tier_of(
                catalog_key.map(String::as_str),
                i.price.lookup_key.as_deref(),
            )
        });
        Ok(Self {
            id: s.id,
            customer_id: s.customer,
            status,
            tier,
            item_id: item.as_ref().map(|i| i.id.clone()),
            price_id,
            current_period_start: item.as_ref().map(|i| i.current_period_start),
            current_period_end: item.as_ref().map(|i| i.current_period_end),
            cancel_at_period_end: s.cancel_at_period_end,
            created: s.created,
            metadata: s.metadata.unwrap_or_default(),
            default_payment_method: s.default_payment_method,
        })
    }
}

/// How a price change is billed: upgrades are charged now, downgrades credited later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proration {
    ChargeNow,
    CreditNextInvoice,
}

#[derive(Clone)]
pub struct StripeApi {
    /// Shared: the state is cloned for every route at start and into every request. None
    /// in a function that never speaks to Stripe ([`StripeApi::keyless`]).
    client: Option<std::sync::Arc<HttpClient>>,
}

/// Why a keyless client's call is refused (a bug: the function was started as one that
/// makes no Stripe call).
pub const NO_KEY: &str = "this function started without Stripe's keys: it makes no Stripe call";

impl std::fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeApi")
    }
}

/// Per call, a resend on a dead pooled connection included: a handler makes at most two
/// Stripe calls in a row and must answer within the Lambda's 25 s (API Gateway's 30 s).
const TIMEOUT: Duration = Duration::from_secs(8);

impl StripeApi {
    pub fn new(api_base: &str, secret_key: &str) -> Result<Self, StripeFailure> {
        let client = HttpClient::new(api_base, secret_key, TIMEOUT)
            .map_err(|e| StripeFailure::Refused(format!("building the Stripe client: {e}")))?;
        Ok(Self {
            client: Some(std::sync::Arc::new(client)),
        })
    }

    /// The client of a function that never speaks to Stripe (metering): it holds no key,
    /// and every call is refused ([`NO_KEY`]) without leaving the process.
    pub fn keyless() -> Self {
        Self { client: None }
    }

    pub async fn create_customer(
        &self,
        owner: &Owner,
        idempotency_key: &str,
    ) -> Result<String, StripeFailure> {
        let request = CreateCustomer::new().metadata(owner.to_metadata());
        Ok(send!(self, request, Some(idempotency_key), wire::Object)?.id)
    }

    /// The customer's default payment method, if it has one.
    pub async fn default_payment_method(
        &self,
        customer_id: &str,
    ) -> Result<Option<String>, StripeFailure> {
        let customer = send!(
            self,
            RetrieveCustomer::new(customer_id),
            None,
            wire::Customer
        )?;
        if customer.deleted == Some(true) {
            return Err(StripeFailure::NotFound(customer_id.into()));
        }
        Ok(customer
            .invoice_settings
            .and_then(|s| s.default_payment_method))
    }

    pub async fn create_checkout_session(
        &self,
        r: CheckoutRequest<'_>,
        idempotency_key: &str,
    ) -> Result<CheckoutLink, StripeFailure> {
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price = Some(r.price_id.to_string());
        item.quantity = Some(1);
        let mut request = CreateCheckoutSession::new()
            .line_items(vec![item])
            .success_url(r.success_url)
            .cancel_url(r.cancel_url)
            .client_reference_id(r.client_reference_id)
            .metadata(r.order.to_metadata());
        request = match r.mode {
            CheckoutMode::Subscription => {
                let mut data = CreateCheckoutSessionSubscriptionData::new();
                data.metadata = Some(r.order.to_metadata());
                request
                    .mode(CheckoutSessionMode::Subscription)
                    .subscription_data(data)
            }
            CheckoutMode::Payment => {
                let mut data = CreateCheckoutSessionPaymentIntentData::new();
                data.metadata = Some(r.order.to_metadata());
                request
                    .mode(CheckoutSessionMode::Payment)
                    .payment_intent_data(data)
            }
        };
        if let Some(customer) = r.customer {
            request = request.customer(customer);
        } else if let Some(email) = r.customer_email {
            request = request.customer_email(email);
        }
        let session = send!(self, request, Some(idempotency_key), wire::CheckoutSession)?;
        let url = session
            .url
            .ok_or_else(|| StripeFailure::Refused("the Checkout Session has no url".into()))?;
        Ok(CheckoutLink {
            session_id: session.id,
            url,
            created: session.created,
        })
    }

    pub async fn create_portal_session(
        &self,
        customer_id: &str,
        return_url: &str,
    ) -> Result<String, StripeFailure> {
        let request = CreateBillingPortalSession::new()
            .customer(customer_id)
            .return_url(return_url);
        Ok(send!(self, request, None, wire::PortalSession)?.url)
    }

    /// A subscription charged at once to `payment_method`, or else the customer's default
    /// payment method; a decline is a card error and leaves nothing behind.
    pub async fn create_subscription(
        &self,
        customer_id: &str,
        price_id: &str,
        payment_method: Option<&str>,
        order: &Order,
        idempotency_key: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let mut item = CreateSubscriptionItems::new();
        item.price = Some(price_id.to_string());
        let mut request = CreateSubscription::new();
        if let Some(card) = payment_method {
            request = request.default_payment_method(card);
        }
        let request = request
            .customer(customer_id)
            .items(vec![item])
            .metadata(order.to_metadata())
            .payment_behavior(CreateSubscriptionPaymentBehavior::ErrorIfIncomplete);
        send!(self, request, Some(idempotency_key), wire::Subscription)?.try_into()
    }

    pub async fn subscription(&self, id: &str) -> Result<SubscriptionSnapshot, StripeFailure> {
        send!(
            self,
            RetrieveSubscription::new(id),
            None,
            wire::Subscription
        )?
        .try_into()
    }

    pub async fn set_cancel_at_period_end(
        &self,
        id: &str,
        cancel: bool,
        idempotency_key: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let request = UpdateSubscription::new(id).cancel_at_period_end(cancel);
        send!(self, request, Some(idempotency_key), wire::Subscription)?.try_into()
    }

    /// What changing the subscription's item to `price_id` now would prorate, in cents
    /// (negative for a credit), from Stripe's own preview.
    pub async fn preview_price_change(
        &self,
        sub: &SubscriptionSnapshot,
        item_id: &str,
        price_id: &str,
    ) -> Result<i64, StripeFailure> {
        let mut item = CreatePreviewInvoiceSubscriptionDetailsItems::new();
        item.id = Some(item_id.to_string());
        item.price = Some(price_id.to_string());
        let mut details = CreatePreviewInvoiceSubscriptionDetails::new();
        details.items = Some(vec![item]);
        details.proration_behavior =
            Some(CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::CreateProrations);
        let request = CreatePreviewInvoice::new()
            .customer(sub.customer_id.as_str())
            .subscription(sub.id.as_str())
            .subscription_details(details);
        let invoice = send!(self, request, None, wire::InvoicePreview)?;
        Ok(invoice
            .lines
            .data
            .iter()
            .filter(|line| {
                line.parent.as_ref().is_some_and(|p| {
                    p.subscription_item_details
                        .as_ref()
                        .is_some_and(|d| d.proration)
                        || p.invoice_item_details.as_ref().is_some_and(|d| d.proration)
                })
            })
            .map(|line| line.amount)
            .sum())
    }

    /// Moves the subscription's item to `price_id`; `change` is merged into the
    /// subscription's metadata (it records what the change was, for a retry to find).
    pub async fn change_price(
        &self,
        id: &str,
        item_id: &str,
        price_id: &str,
        proration: Proration,
        change: &PriceChange,
        idempotency_key: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let mut item = UpdateSubscriptionItems::new();
        item.id = Some(item_id.to_string());
        item.price = Some(price_id.to_string());
        let behavior = match proration {
            Proration::ChargeNow => UpdateSubscriptionProrationBehavior::AlwaysInvoice,
            Proration::CreditNextInvoice => UpdateSubscriptionProrationBehavior::CreateProrations,
        };
        let request = UpdateSubscription::new(id)
            .items(vec![item])
            .metadata(change.to_metadata())
            .proration_behavior(behavior)
            .payment_behavior(UpdateSubscriptionPaymentBehavior::ErrorIfIncomplete);
        send!(self, request, Some(idempotency_key), wire::Subscription)?.try_into()
    }

    /// Why an invoice's last payment attempt failed, in Stripe's words ("Your card was
    /// declined."), when Stripe says.
    pub async fn invoice_payment_error(
        &self,
        invoice_id: &str,
    ) -> Result<Option<String>, StripeFailure> {
        let request = RetrieveInvoice::new(invoice_id)
            .expand(vec!["payments.data.payment.payment_intent".to_string()]);
        let invoice = send!(self, request, None, wire::InvoicePayments)?;
        Ok(invoice
            .payments
            .into_iter()
            .flat_map(|list| list.data.into_iter().rev())
            .filter_map(|p| p.payment.payment_intent)
            .find_map(|pi| pi.last_payment_error.and_then(|e| e.message)))
    }

    /// Expires an open Checkout Session so it can no longer be paid. Stripe refuses to
    /// expire one that is not open; then its status says whether it was paid first
    /// ([`SessionEnd::Completed`]) or had ended anyway.
    pub async fn expire_checkout_session(
        &self,
        session_id: &str,
    ) -> Result<SessionEnd, StripeFailure> {
        match send!(
            self,
            ExpireCheckoutSession::new(session_id),
            None,
            wire::Object
        ) {
            Ok(_) | Err(StripeFailure::NotFound(_)) => Ok(SessionEnd::Expired),
            Err(StripeFailure::Refused(_)) => {
                let session = send!(
                    self,
                    RetrieveCheckoutSession::new(session_id),
                    None,
                    wire::SessionStatus
                )?;
                match session.status.as_deref() {
                    Some("complete") => Ok(SessionEnd::Completed),
                    Some("expired") => Ok(SessionEnd::Expired),
                    other => Err(StripeFailure::Unavailable(format!(
                        "Checkout Session {session_id} refused to expire while {other:?}"
                    ))),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Every subscription of the customer, whatever its status (Stripe's `status=all`),
    /// newest first. Customers of ours hold a handful; past 100 the oldest are not read.
    pub async fn subscriptions_of(
        &self,
        customer_id: &str,
    ) -> Result<Vec<SubscriptionSnapshot>, StripeFailure> {
        let request = ListSubscription::new()
            .customer(customer_id)
            .status(ListSubscriptionStatus::All)
            .limit(100);
        let list = send!(self, request, None, wire::SubscriptionList)?;
        if list.has_more {
            tracing::warn!(
                customer = customer_id,
                "more than 100 subscriptions; the oldest were not read"
            );
        }
        list.data.into_iter().map(TryInto::try_into).collect()
    }

    /// Makes `payment_method` (attached to the customer) its default for invoices and
    /// subscriptions.
    pub async fn set_default_payment_method(
        &self,
        customer_id: &str,
        payment_method: &str,
        idempotency_key: &str,
    ) -> Result<(), StripeFailure> {
        let mut settings = UpdateCustomerInvoiceSettings::new();
        settings.default_payment_method = Some(payment_method.to_string());
        let request = UpdateCustomer::new(customer_id).invoice_settings(settings);
        send!(self, request, Some(idempotency_key), wire::Object)?;
        Ok(())
    }

    /// One page (up to 100) of the events created at or after `since` (unix s), newest
    /// first as Stripe lists them, continuing after `starting_after`.
    pub async fn events_since(
        &self,
        since: i64,
        starting_after: Option<&str>,
    ) -> Result<EventPage, StripeFailure> {
        let mut request = ListEvent::new()
            .created(stripe_types::RangeQueryTs::gte(since))
            .limit(100);
        if let Some(after) = starting_after {
            request = request.starting_after(after);
        }
        let list = send!(self, request, None, wire::EventList)?;
        let events = list
            .data
            .iter()
            .map(|e| serde_json::from_str(&miniserde::json::to_string(e)))
            .collect::<Result<Vec<serde_json::Value>, _>>()
            .map_err(|e| StripeFailure::Unavailable(format!("an event that is not JSON: {e}")))?;
        let next = list
            .has_more
            .then(|| {
                events
                    .last()
                    .and_then(|e| e["id"].as_str())
                    .map(str::to_string)
            })
            .flatten();
        Ok(EventPage { events, next })
    }
}
