//! The Stripe adapter: the only module that speaks to Stripe (async-stripe 1.0). Handlers
//! call these few operations and get our own types and errors back. Every call that creates
//! or changes something carries an idempotency key chosen by the caller.

use crate::catalog::Tier;
use crate::error::ApiError;
use std::collections::HashMap;
use std::time::Duration;
use stripe::{Client, ClientBuilder, StripeError};
use stripe::{RequestStrategy, StripeRequest};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::invoice::{
    CreatePreviewInvoice, CreatePreviewInvoiceSubscriptionDetails,
    CreatePreviewInvoiceSubscriptionDetailsItems,
    CreatePreviewInvoiceSubscriptionDetailsProrationBehavior, RetrieveInvoice,
};
use stripe_billing::subscription::{
    CreateSubscription, CreateSubscriptionItems, CreateSubscriptionPaymentBehavior,
    RetrieveSubscription, UpdateSubscription, UpdateSubscriptionItems,
    UpdateSubscriptionPaymentBehavior, UpdateSubscriptionProrationBehavior,
};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionPaymentIntentData,
    CreateCheckoutSessionSubscriptionData, ExpireCheckoutSession,
};
use stripe_core::customer::{CreateCustomer, RetrieveCustomer, RetrieveCustomerReturned};
use stripe_shared::{CheckoutSessionMode, Subscription};

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
    /// Stripe did not answer, or answered 5xx / 429.
    #[error("Stripe unavailable: {0}")]
    Unavailable(String),
}

impl From<StripeFailure> for ApiError {
    fn from(f: StripeFailure) -> Self {
        match f {
            StripeFailure::Card(message) => ApiError::PaymentFailed {
                stripe_error: message,
            },
            StripeFailure::NotFound(_) => ApiError::NotFound("No such object.".into()),
            StripeFailure::Refused(detail) => {
                ApiError::internal(format!("Stripe refused a request: {detail}"))
            }
            StripeFailure::Unavailable(detail) => ApiError::UpstreamUnavailable(detail),
        }
    }
}

fn failure(e: StripeError) -> StripeFailure {
    match e {
        StripeError::Stripe(err, status) => {
            let message = err
                .message
                .clone()
                .unwrap_or_else(|| format!("Stripe error {status}"));
            match status {
                402 => StripeFailure::Card(message),
                404 => StripeFailure::NotFound(message),
                429 | 500.. => StripeFailure::Unavailable(format!("{status}: {message}")),
                _ if matches!(err.type_, stripe_shared::ApiErrorsType::CardError) => {
                    StripeFailure::Card(message)
                }
                _ => StripeFailure::Refused(format!("{status}: {message}")),
            }
        }
        other => StripeFailure::Unavailable(other.to_string()),
    }
}

/// Sends an async-stripe request: one attempt, under `key` (an `Option<&str>`) when given,
/// with Stripe's failures mapped to ours.
macro_rules! send {
    ($self:ident, $request:expr, $key:expr) => {
        $request
            .customize()
            .request_strategy(strategy($key))
            .send(&$self.client)
            .await
            .map_err(failure)
    };
}

/// One attempt, under the caller's idempotency key when it has one. Keys we derive are hex
/// digests, always valid; an invalid one falls back to a plain single attempt.
fn strategy(idempotency_key: Option<&str>) -> RequestStrategy {
    idempotency_key
        .and_then(|key| stripe::IdempotencyKey::new(key).ok())
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
    pub metadata: HashMap<String, String>,
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
    pub status: String,
    pub tier: Option<Tier>,
    pub item_id: Option<String>,
    pub price_id: Option<String>,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub created: i64,
    pub metadata: HashMap<String, String>,
}

impl From<&Subscription> for SubscriptionSnapshot {
    fn from(s: &Subscription) -> Self {
        // Current API: the billing period lives on the subscription items.
        let item = s.items.data.first();
        let price_id = item.map(|i| i.price.id.to_string());
        Self {
            id: s.id.to_string(),
            customer_id: s.customer.id().to_string(),
            status: s.status.as_str().to_string(),
            tier: price_id.as_deref().and_then(Tier::from_price_id),
            item_id: item.map(|i| i.id.to_string()),
            price_id,
            current_period_start: item.map(|i| i.current_period_start),
            current_period_end: item.map(|i| i.current_period_end),
            cancel_at_period_end: s.cancel_at_period_end,
            created: s.created,
            metadata: s.metadata.clone(),
        }
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
    client: Client,
}

impl std::fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeApi")
    }
}

/// Per-attempt timeout: a Lambda must answer well within API Gateway's 30 s.
const TIMEOUT: Duration = Duration::from_secs(10);

impl StripeApi {
    pub fn new(api_base: &str, secret_key: &str) -> Result<Self, StripeFailure> {
        let client = ClientBuilder::new(secret_key)
            .url(api_base)
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| StripeFailure::Refused(format!("building the Stripe client: {e}")))?;
        Ok(Self { client })
    }

    pub async fn create_customer(
        &self,
        metadata: HashMap<String, String>,
        idempotency_key: &str,
    ) -> Result<String, StripeFailure> {
        let request = CreateCustomer::new().metadata(metadata);
        Ok(send!(self, request, Some(idempotency_key))?.id.to_string())
    }

    /// The customer's default payment method, if it has one.
    pub async fn default_payment_method(
        &self,
        customer_id: &str,
    ) -> Result<Option<String>, StripeFailure> {
        match send!(self, RetrieveCustomer::new(customer_id), None)? {
            RetrieveCustomerReturned::Customer(c) => Ok(c
                .invoice_settings
                .and_then(|s| s.default_payment_method)
                .map(|pm| pm.id().to_string())),
            RetrieveCustomerReturned::DeletedCustomer(_) => {
                Err(StripeFailure::NotFound(customer_id.into()))
            }
        }
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
            .metadata(r.metadata.clone());
        request = match r.mode {
            CheckoutMode::Subscription => {
                let mut data = CreateCheckoutSessionSubscriptionData::new();
                data.metadata = Some(r.metadata.clone());
                request
                    .mode(CheckoutSessionMode::Subscription)
                    .subscription_data(data)
            }
            CheckoutMode::Payment => {
                let mut data = CreateCheckoutSessionPaymentIntentData::new();
                data.metadata = Some(r.metadata.clone());
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
        let session = send!(self, request, Some(idempotency_key))?;
        let url = session
            .url
            .ok_or_else(|| StripeFailure::Refused("the Checkout Session has no url".into()))?;
        Ok(CheckoutLink {
            session_id: session.id.to_string(),
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
        Ok(send!(self, request, None)?.url)
    }

    /// A subscription charged at once to the customer's default payment method; a decline is
    /// a card error and leaves nothing behind.
    pub async fn create_subscription(
        &self,
        customer_id: &str,
        price_id: &str,
        metadata: HashMap<String, String>,
        idempotency_key: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let mut item = CreateSubscriptionItems::new();
        item.price = Some(price_id.to_string());
        let request = CreateSubscription::new()
            .customer(customer_id)
            .items(vec![item])
            .metadata(metadata)
            .payment_behavior(CreateSubscriptionPaymentBehavior::ErrorIfIncomplete);
        Ok(SubscriptionSnapshot::from(&send!(
            self,
            request,
            Some(idempotency_key)
        )?))
    }

    pub async fn subscription(&self, id: &str) -> Result<SubscriptionSnapshot, StripeFailure> {
        Ok(SubscriptionSnapshot::from(&send!(
            self,
            RetrieveSubscription::new(id),
            None
        )?))
    }

    pub async fn set_cancel_at_period_end(
        &self,
        id: &str,
        cancel: bool,
        idempotency_key: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let request = UpdateSubscription::new(id).cancel_at_period_end(cancel);
        Ok(SubscriptionSnapshot::from(&send!(
            self,
            request,
            Some(idempotency_key)
        )?))
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
        let invoice = send!(self, request, None)?;
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

    pub async fn change_price(
        &self,
        id: &str,
        item_id: &str,
        price_id: &str,
        proration: Proration,
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
            .proration_behavior(behavior)
            .payment_behavior(UpdateSubscriptionPaymentBehavior::ErrorIfIncomplete);
        Ok(SubscriptionSnapshot::from(&send!(
            self,
            request,
            Some(idempotency_key)
        )?))
    }

    /// Why an invoice's last payment attempt failed, in Stripe's words ("Your card was
    /// declined."), when Stripe says.
    pub async fn invoice_payment_error(
        &self,
        invoice_id: &str,
    ) -> Result<Option<String>, StripeFailure> {
        let request = RetrieveInvoice::new(invoice_id)
            .expand(vec!["payments.data.payment.payment_intent".to_string()]);
        let invoice = send!(self, request, None)?;
        Ok(invoice
            .payments
            .iter()
            .flat_map(|list| list.data.iter().rev())
            .filter_map(|p| {
                p.payment
                    .payment_intent
                    .as_ref()
                    .and_then(|pi| pi.as_object())
            })
            .find_map(|pi| {
                pi.last_payment_error
                    .as_ref()
                    .and_then(|e| e.message.clone())
            }))
    }

    /// Expires an open Checkout Session so it can no longer be paid. A session that is
    /// already expired or complete is left as it is (Stripe refuses; that is not an error).
    pub async fn expire_checkout_session(&self, session_id: &str) -> Result<(), StripeFailure> {
        match send!(self, ExpireCheckoutSession::new(session_id), None) {
            Ok(_) | Err(StripeFailure::Refused(_)) | Err(StripeFailure::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
