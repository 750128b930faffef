//! Prices by lookup key: what the functions resolve once per cold start, and what
//! `admin stripe-sync` (and the emulator's seeding, the same code) makes true in a Stripe
//! account.
//!
//! Stripe chooses price ids, and they differ between test and live mode; the catalog
//! (`crate::catalog::sellables`) names each price by a lookup key. A price's amount never
//! changes in Stripe: a changed amount is a new price, and the lookup key moves to it
//! (`transfer_lookup_key`). The old price keeps its subscribers, and its `catalog_key`
//! metadata, so a subscription on it still maps to its tier.

use super::{StripeApi, StripeFailure, wire};
use crate::catalog::{CURRENCY, Sellable, Tier};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use stripe_client_core::{RequestBuilder, StripeMethod, StripeRequest};
use stripe_product::price::{
    CreatePrice, CreatePriceRecurring, CreatePriceRecurringInterval, ListPrice,
};
use stripe_product::product::{CreateProduct, ListProduct, UpdateProduct};

/// The metadata key every price the sync creates carries: its catalog lookup key, which
/// stays on the price when the lookup key itself moves on.
pub const CATALOG_KEY: &str = "catalog_key";

/// Why the functions cannot start: the catalog names a price the Stripe account lacks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PriceError {
    #[error(
        "Stripe has no active price with lookup key {}: run `admin stripe-sync` against this Stripe account",
        .0.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
    )]
    Missing(Vec<String>),
    #[error("resolving the catalog's prices: {0}")]
    Stripe(#[from] StripeFailure),
}

/// A price as Stripe reports it, reduced to what the catalog compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub id: String,
    pub lookup_key: Option<String>,
    pub product: String,
    pub unit_amount: Option<i64>,
    /// Lowercase, as Stripe answers (`usd`).
    pub currency: String,
    /// `month` for a recurring price; `None` for one-time.
    pub interval: Option<String>,
    pub active: bool,
    /// The `catalog_key` metadata ([`CATALOG_KEY`]).
    pub catalog_key: Option<String>,
}

impl Price {
    /// Whether this price sells `item` as the catalog states it.
    pub fn matches(&self, item: &Sellable) -> bool {
        self.product == item.product_id
            && self.unit_amount == Some(item.unit_amount_cents)
            && self.currency.eq_ignore_ascii_case(CURRENCY)
            && self.interval.as_deref() == item.interval
            && self.active
    }

    fn from_wire(p: wire::Price) -> Self {
        Self {
            id: p.id,
            lookup_key: p.lookup_key,
            product: p.product,
            unit_amount: p.unit_amount,
            currency: p.currency,
            interval: p.recurring.map(|r| r.interval),
            active: p.active,
            catalog_key: p.metadata.and_then(|mut m| m.remove(CATALOG_KEY)),
        }
    }
}

/// The tier a subscription's price sells: by the catalog key the sync put in its metadata
/// (which stays when the lookup key moves to a new price), else by its lookup key.
pub fn tier_of(catalog_key: Option<&str>, lookup_key: Option<&str>) -> Option<Tier> {
    catalog_key
        .and_then(Tier::from_lookup_key)
        .or_else(|| lookup_key.and_then(Tier::from_lookup_key))
}

/// The catalog's lookup keys resolved to the account's price ids, once per cold start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prices {
    ids: HashMap<String, String>,
}

impl Prices {
    /// The price id of `lookup_key`. Every key of the catalog resolved at start
    /// ([`StripeApi::resolve_prices`]); another is a bug, refused as such.
    pub fn id(&self, lookup_key: &str) -> Result<&str, StripeFailure> {
        self.ids.get(lookup_key).map(String::as_str).ok_or_else(|| {
            StripeFailure::Refused(format!("no price resolved for lookup key `{lookup_key}`"))
        })
    }

    /// The paid tier's price id (`None` for the free tier).
    pub fn tier(&self, tier: Tier) -> Option<&str> {
        tier.info()
            .lookup_key
            .and_then(|k| self.ids.get(k))
            .map(String::as_str)
    }

    /// From `(lookup key, price id)` pairs: for tests and tools that know them.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            ids: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// The prices as a function's handlers see them: resolved once per cold start, beside the
/// first request rather than before it (`crate::lambda`). A handler that sells waits for
/// them ([`PriceBook::get`]); the others never do. Clones share the one resolution.
#[derive(Debug, Clone)]
pub struct PriceBook(tokio::sync::watch::Receiver<Option<Arc<Prices>>>);

impl PriceBook {
    /// Prices already resolved.
    pub fn resolved(prices: Prices) -> Self {
        Self(tokio::sync::watch::channel(Some(Arc::new(prices))).1)
    }

    /// A book that `resolve` fills: the book, and the resolution to drive. If the
    /// resolution fails, the function's start fails with its error (`crate::lambda`), and
    /// a handler still waiting is told the prices are missing.
    pub fn resolving(
        resolve: impl Future<Output = Result<Prices, PriceError>>,
    ) -> (Self, impl Future<Output = Result<(), PriceError>>) {
        let (book, prices) = tokio::sync::watch::channel(None);
        let resolution = async move {
            book.send_replace(Some(Arc::new(resolve.await?)));
            Ok(())
        };
        (Self(prices), resolution)
    }

    /// The prices, once resolved.
    pub async fn get(&self) -> Result<Arc<Prices>, StripeFailure> {
        let mut prices = self.0.clone();
        let resolved = prices
            .wait_for(Option::is_some)
            .await
            .map(|p| p.clone())
            .ok()
            .flatten();
        resolved.ok_or_else(|| {
            StripeFailure::Refused("the catalog's prices could not be resolved at start".into())
        })
    }
}

/// The catalog's prices checked against what Stripe holds for their keys: every key must
/// resolve; a price that differs from the catalog (the catalog changed, the sync has not run
/// yet) is named in the log, not refused, since Stripe's amount is what a customer pays.
pub fn resolve(catalog: &[Sellable], found: Vec<Price>) -> Result<Prices, PriceError> {
    let mut ids = HashMap::new();
    let mut missing = Vec::new();
    for item in catalog {
        match found
            .iter()
            .find(|p| p.lookup_key.as_deref() == Some(item.lookup_key))
        {
            Some(price) => {
                if !price.matches(item) {
                    tracing::error!(
                        lookup_key = item.lookup_key,
                        price = %price.id,
                        stripe_amount = ?price.unit_amount,
                        catalog_amount = item.unit_amount_cents,
                        "the Stripe price differs from the catalog: run `admin stripe-sync`"
                    );
                }
                ids.insert(item.lookup_key.to_string(), price.id.clone());
            }
            None => missing.push(item.lookup_key.to_string()),
        }
    }
    if missing.is_empty() {
        Ok(Prices { ids })
    } else {
        Err(PriceError::Missing(missing))
    }
}

/// A product as Stripe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub active: bool,
}

/// The Customer Portal configuration the sync maintains: cancellation at period end and
/// switching between the paid tiers' prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portal {
    pub id: String,
    pub cancel_at_period_end: bool,
    pub switch_plans: bool,
    /// `(product, price ids)` customers may switch between, sorted.
    pub products: Vec<(String, Vec<String>)>,
}

/// One change the sync makes (or, with `--dry-run`, would make).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    CreateProduct {
        product_id: String,
        name: String,
    },
    UpdateProduct {
        product_id: String,
        name: String,
    },
    /// A new price for the item, holding its lookup key (moved from `replaces` when that
    /// price holds it now).
    CreatePrice {
        item: Sellable,
        replaces: Option<Price>,
    },
    /// The portal's configuration created (`id: None`) or updated to allow `products`.
    ConfigurePortal {
        id: Option<String>,
        products: Vec<(String, Vec<String>)>,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateProduct { product_id, name } => {
                write!(f, "create product {product_id} ({name})")
            }
            Change::UpdateProduct { product_id, name } => {
                write!(f, "update product {product_id}: name `{name}`, active")
            }
            Change::CreatePrice { item, replaces } => {
                let per = item.interval.map(|i| format!("/{i}")).unwrap_or_default();
                write!(
                    f,
                    "create price {} {} {}{per} on {}",
                    item.lookup_key,
                    item.unit_amount_cents,
                    CURRENCY.to_ascii_lowercase(),
                    item.product_id
                )?;
                if let Some(old) = replaces {
                    write!(
                        f,
                        ", moving the lookup key from {} ({} {}{})",
                        old.id,
                        old.unit_amount.unwrap_or_default(),
                        old.currency,
                        old.interval
                            .as_deref()
                            .map(|i| format!("/{i}"))
                            .unwrap_or_default()
                    )?;
                }
                Ok(())
            }
            Change::ConfigurePortal { id, products } => {
                let allowed: Vec<String> = products
                    .iter()
                    .map(|(product, prices)| format!("{product}: {}", prices.join(", ")))
                    .collect();
                match id {
                    Some(id) => write!(f, "update Customer Portal configuration {id}")?,
                    None => write!(f, "create a Customer Portal configuration")?,
                }
                write!(
                    f,
                    ": cancel at period end, switch plans ({})",
                    allowed.join("; ")
                )
            }
        }
    }
}

/// The product and price changes that make the account sell `catalog` (pure).
pub fn plan_catalog(catalog: &[Sellable], products: &[Product], prices: &[Price]) -> Vec<Change> {
    let mut changes = Vec::new();
    for item in catalog {
        match products.iter().find(|p| p.id == item.product_id) {
            None => changes.push(Change::CreateProduct {
                product_id: item.product_id.to_string(),
                name: item.name.to_string(),
            }),
            Some(p) if p.name != item.name || !p.active => changes.push(Change::UpdateProduct {
                product_id: item.product_id.to_string(),
                name: item.name.to_string(),
            }),
            Some(_) => {}
        }
        let holder = prices
            .iter()
            .find(|p| p.lookup_key.as_deref() == Some(item.lookup_key));
        if !holder.is_some_and(|p| p.matches(item)) {
            changes.push(Change::CreatePrice {
                item: *item,
                replaces: holder.cloned(),
            });
        }
    }
    changes
}

/// The portal products the catalog's paid tiers allow switching between, given their
/// resolved price ids, sorted.
pub fn portal_products(catalog: &[Sellable], prices: &Prices) -> Vec<(String, Vec<String>)> {
    let mut products: Vec<(String, Vec<String>)> = catalog
        .iter()
        .filter(|s| s.interval.is_some())
        .filter_map(|s| {
            prices
                .id(s.lookup_key)
                .ok()
                .map(|id| (s.product_id.to_string(), vec![id.to_string()]))
        })
        .collect();
    products.sort();
    products
}

/// The portal change needed, if any (pure).
pub fn plan_portal(
    current: Option<&Portal>,
    products: Vec<(String, Vec<String>)>,
) -> Option<Change> {
    match current {
        Some(p) if p.cancel_at_period_end && p.switch_plans && p.products == products => None,
        current => Some(Change::ConfigurePortal {
            id: current.map(|p| p.id.clone()),
            products,
        }),
    }
}

/// What `admin stripe-sync` did (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub changes: Vec<Change>,
    /// The lookup keys' price ids after the sync (before it, on a dry run).
    pub prices: Vec<(String, String)>,
}

/// Makes the Stripe account sell `catalog`: products, prices by lookup key, and the Customer
/// Portal's configuration. Idempotent: a second run changes nothing. `dry_run` reads only.
pub async fn sync(
    api: &StripeApi,
    catalog: &[Sellable],
    dry_run: bool,
) -> Result<SyncReport, StripeFailure> {
    let keys: Vec<&str> = catalog.iter().map(|s| s.lookup_key).collect();
    let product_ids: Vec<&str> = catalog.iter().map(|s| s.product_id).collect();
    let products = api.products(&product_ids).await?;
    let prices = api.prices_by_lookup_key(&keys).await?;
    let mut changes = plan_catalog(catalog, &products, &prices);
    let mut resolved: HashMap<String, String> = prices
        .iter()
        .filter_map(|p| p.lookup_key.clone().map(|k| (k, p.id.clone())))
        .collect();
    let run = ulid::Ulid::generate().to_string();
    if !dry_run {
        for change in &changes {
            if let Some(price) = api.apply(&run, change).await? {
                resolved.insert(price.0, price.1);
            }
        }
    }
    let resolved = Prices { ids: resolved };
    let portal = api.default_portal().await?;
    let pending_prices = dry_run
        && changes
            .iter()
            .any(|c| matches!(c, Change::CreatePrice { item, .. } if item.interval.is_some()));
    let portal_change = if pending_prices {
        Some(Change::ConfigurePortal {
            id: portal.as_ref().map(|p| p.id.clone()),
            products: portal_products(catalog, &resolved),
        })
    } else {
        plan_portal(portal.as_ref(), portal_products(catalog, &resolved))
    };
    if let Some(change) = portal_change {
        if !dry_run {
            api.apply(&run, &change).await?;
        }
        changes.push(change);
    }
    let mut prices: Vec<(String, String)> = resolved.ids.into_iter().collect();
    prices.sort();
    Ok(SyncReport { changes, prices })
}

/// The request of a list or a retrieve, encoded by async-stripe's builder and read as `T`.
struct Raw(RequestBuilder);

impl Raw {
    fn build(self) -> RequestBuilder {
        self.0
    }
}

/// The portal configuration's parameters, as Stripe's form encoding takes them.
#[derive(serde::Serialize)]
struct PortalParams<'a> {
    features: PortalFeatures<'a>,
}

#[derive(serde::Serialize)]
struct PortalFeatures<'a> {
    subscription_cancel: PortalCancel,
    subscription_update: PortalUpdate<'a>,
    payment_method_update: Enabled,
    invoice_history: Enabled,
}

#[derive(serde::Serialize)]
struct Enabled {
    enabled: bool,
}

#[derive(serde::Serialize)]
struct PortalCancel {
    enabled: bool,
    mode: &'static str,
}

#[derive(serde::Serialize)]
struct PortalUpdate<'a> {
    enabled: bool,
    default_allowed_updates: [&'static str; 1],
    /// As the API's own upgrades: prorated and invoiced at once.
    proration_behavior: &'static str,
    products: Vec<PortalProduct<'a>>,
}

#[derive(serde::Serialize)]
struct PortalProduct<'a> {
    product: &'a str,
    prices: &'a [String],
}

impl StripeApi {
    /// The active prices holding any of `lookup_keys` (at most 10, Stripe's limit).
    pub async fn prices_by_lookup_key(
        &self,
        lookup_keys: &[&str],
    ) -> Result<Vec<Price>, StripeFailure> {
        let request = ListPrice::new()
            .lookup_keys(
                lookup_keys
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>(),
            )
            .active(true)
            .limit(100);
        let list = send!(self, request, None, wire::PriceList)?;
        Ok(list.data.into_iter().map(Price::from_wire).collect())
    }

    /// The catalog's lookup keys resolved to price ids: one call, at cold start. A key with
    /// no active price is an error naming it.
    pub async fn resolve_prices(&self, catalog: &[Sellable]) -> Result<Prices, PriceError> {
        let keys: Vec<&str> = catalog.iter().map(|s| s.lookup_key).collect();
        resolve(catalog, self.prices_by_lookup_key(&keys).await?)
    }

    async fn products(&self, ids: &[&str]) -> Result<Vec<Product>, StripeFailure> {
        let request = ListProduct::new()
            .ids(ids.iter().map(|k| k.to_string()).collect::<Vec<_>>())
            .limit(100);
        let list = send!(self, request, None, wire::ProductList)?;
        Ok(list
            .data
            .into_iter()
            .map(|p| Product {
                id: p.id,
                name: p.name,
                active: p.active,
            })
            .collect())
    }

    /// The account's default portal configuration, if it has one.
    async fn default_portal(&self) -> Result<Option<Portal>, StripeFailure> {
        let request = Raw(
            RequestBuilder::new(StripeMethod::Get, "/billing_portal/configurations")
                .query(&[("is_default", "true"), ("limit", "1")]),
        );
        let list = send!(self, request, None, wire::PortalList)?;
        Ok(list.data.into_iter().next().map(|c| {
            let cancel = c.features.subscription_cancel;
            let update = c.features.subscription_update;
            let mut products: Vec<(String, Vec<String>)> = update
                .products
                .unwrap_or_default()
                .into_iter()
                .map(|p| {
                    let mut prices = p.prices;
                    prices.sort();
                    (p.product, prices)
                })
                .collect();
            products.sort();
            Portal {
                id: c.id,
                cancel_at_period_end: cancel.enabled
                    && cancel.mode.as_deref() == Some("at_period_end"),
                switch_plans: update.enabled
                    && update.default_allowed_updates.iter().any(|u| u == "price")
                    && update.proration_behavior.as_deref() == Some("always_invoice"),
                products,
            }
        }))
    }

    /// Makes one change of the sync run `run`; a created price's `(lookup key, id)`.
    ///
    /// The Idempotency-Key is the change and its run: a resend of the call (a dead pooled
    /// connection) finds what it made. Not the change alone: an identical change decided by a
    /// later run (a key removed by hand, then put back) is a new effect, which Stripe would
    /// otherwise answer for 24 hours with the first one's object. A run that dies half-way is
    /// simply run again: it plans from what Stripe then holds.
    async fn apply(
        &self,
        run: &str,
        change: &Change,
    ) -> Result<Option<(String, String)>, StripeFailure> {
        let key =
            super::client::bound_key(run, "POST", "stripe-sync", change.to_string().as_bytes());
        match change {
            Change::CreateProduct { product_id, name } => {
                let request = CreateProduct::new(name.as_str()).id(product_id.as_str());
                send!(self, request, Some(&key), wire::Object)?;
                Ok(None)
            }
            Change::UpdateProduct { product_id, name } => {
                let request = UpdateProduct::new(product_id.as_str())
                    .name(name.as_str())
                    .active(true);
                send!(self, request, Some(&key), wire::Object)?;
                Ok(None)
            }
            Change::CreatePrice { item, .. } => {
                let currency = CURRENCY
                    .to_ascii_lowercase()
                    .parse::<stripe_types::Currency>()
                    .map_err(|_| StripeFailure::Refused(format!("currency {CURRENCY}")))?;
                let mut request = CreatePrice::new(currency)
                    .product(item.product_id)
                    .unit_amount(item.unit_amount_cents)
                    .lookup_key(item.lookup_key)
                    .transfer_lookup_key(true)
                    .metadata([(CATALOG_KEY.to_string(), item.lookup_key.to_string())]);
                if let Some(interval) = item.interval {
                    let interval = interval
                        .parse::<CreatePriceRecurringInterval>()
                        .map_err(|_| StripeFailure::Refused(format!("interval {interval}")))?;
                    request = request.recurring(CreatePriceRecurring::new(interval));
                }
                let price = send!(self, request, Some(&key), wire::Object)?;
                Ok(Some((item.lookup_key.to_string(), price.id)))
            }
            Change::ConfigurePortal { id, products } => {
                let params = PortalParams {
                    features: PortalFeatures {
                        subscription_cancel: PortalCancel {
                            enabled: true,
                            mode: "at_period_end",
                        },
                        subscription_update: PortalUpdate {
                            enabled: true,
                            default_allowed_updates: ["price"],
                            proration_behavior: "always_invoice",
                            products: products
                                .iter()
                                .map(|(product, prices)| PortalProduct { product, prices })
                                .collect(),
                        },
                        payment_method_update: Enabled { enabled: true },
                        invoice_history: Enabled { enabled: true },
                    },
                };
                let path = match id {
                    Some(id) => format!("/billing_portal/configurations/{id}"),
                    None => "/billing_portal/configurations".to_string(),
                };
                let request = Raw(RequestBuilder::new(StripeMethod::Post, path).form(&params));
                send!(self, request, Some(&key), wire::Object)?;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::sellables;

    #[tokio::test]
    async fn a_book_answers_once_its_resolution_ends_and_says_so_when_it_failed() {
        let (sent, arrives) = tokio::sync::oneshot::channel::<Result<Prices, PriceError>>();
        let (book, resolution) = PriceBook::resolving(async move {
            arrives.await.unwrap_or(Err(PriceError::Missing(vec![])))
        });
        let waiting = tokio::spawn({
            let book = book.clone();
            async move { book.get().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "answered before the prices were resolved"
        );
        let _ = sent.send(Ok(Prices::from_pairs([("pro", "price_1")])));
        resolution.await.expect("resolved");
        let prices = waiting.await.expect("a task").expect("the prices");
        assert_eq!(prices.id("pro").ok(), Some("price_1"));
        assert_eq!(
            book.get().await.expect("still there").id("pro").ok(),
            Some("price_1")
        );

        let (book, resolution) =
            PriceBook::resolving(async { Err(PriceError::Missing(vec!["pro".into()])) });
        let err = resolution.await.expect_err("nothing to resolve");
        assert!(err.to_string().contains("`pro`"), "{err}");
        assert!(book.get().await.is_err());
    }

    fn price_of(item: &Sellable, id: &str) -> Price {
        Price {
            id: id.into(),
            lookup_key: Some(item.lookup_key.into()),
            product: item.product_id.into(),
            unit_amount: Some(item.unit_amount_cents),
            currency: "usd".into(),
            interval: item.interval.map(str::to_string),
            active: true,
            catalog_key: Some(item.lookup_key.into()),
        }
    }

    fn synced() -> (Vec<Product>, Vec<Price>) {
        let catalog = sellables();
        let products = catalog
            .iter()
            .map(|s| Product {
                id: s.product_id.into(),
                name: s.name.into(),
                active: true,
            })
            .collect();
        let prices = catalog
            .iter()
            .enumerate()
            .map(|(i, s)| price_of(s, &format!("price_{i}")))
            .collect();
        (products, prices)
    }

    #[test]
    fn an_empty_account_gets_every_product_and_price() {
        let catalog = sellables();
        let changes = plan_catalog(&catalog, &[], &[]);
        assert_eq!(changes.len(), 2 * catalog.len());
        assert!(changes.iter().all(|c| !matches!(
            c,
            Change::CreatePrice {
                replaces: Some(_),
                ..
            }
        )));
    }

    #[test]
    fn a_synced_account_needs_nothing() {
        let (products, prices) = synced();
        assert_eq!(plan_catalog(&sellables(), &products, &prices), vec![]);
    }

    #[test]
    fn a_changed_amount_is_a_new_price_that_takes_the_key() {
        let (products, mut prices) = synced();
        prices[0].unit_amount = Some(8900);
        let changes = plan_catalog(&sellables(), &products, &prices);
        assert_eq!(
            changes,
            vec![Change::CreatePrice {
                item: sellables()[0],
                replaces: Some(prices[0].clone()),
            }]
        );
    }

    #[test]
    fn a_renamed_product_is_updated_in_place() {
        let (mut products, prices) = synced();
        products[2].name = "Old name".into();
        let changes = plan_catalog(&sellables(), &products, &prices);
        assert!(matches!(&changes[..], [Change::UpdateProduct { .. }]));
    }

    #[test]
    fn resolving_names_every_missing_key() {
        let (_, mut prices) = synced();
        prices.retain(|p| p.lookup_key.as_deref() != Some("billing_report_single"));
        let err = resolve(&sellables(), prices).unwrap_err();
        assert_eq!(
            err,
            PriceError::Missing(vec!["billing_report_single".into()])
        );
        assert!(err.to_string().contains("`billing_report_single`"), "{err}");
    }

    #[test]
    fn a_portal_allowing_the_tiers_prices_needs_nothing() {
        let (_, prices) = synced();
        let resolved = resolve(&sellables(), prices).unwrap();
        let products = portal_products(&sellables(), &resolved);
        assert_eq!(products.len(), 2);
        let portal = Portal {
            id: "bpc_1".into(),
            cancel_at_period_end: true,
            switch_plans: true,
            products: products.clone(),
        };
        assert_eq!(plan_portal(Some(&portal), products.clone()), None);
        let immediate = Portal {
            cancel_at_period_end: false,
            ..portal
        };
        assert!(plan_portal(Some(&immediate), products).is_some());
    }

    #[test]
    fn a_moved_key_still_maps_the_old_price_to_its_tier() {
        assert_eq!(tier_of(Some("billing_pro_monthly"), None), Some(Tier::Pro));
        assert_eq!(
            tier_of(None, Some("billing_enterprise_monthly")),
            Some(Tier::Enterprise)
        );
        assert_eq!(tier_of(None, None), None);
    }
}
