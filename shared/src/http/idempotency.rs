//! Idempotency-Key for every POST, PUT and DELETE of the API.
//!
//! [`middleware`] runs around every route of [`crate::http::ApiRouter::into_router`]. A
//! POST, PUT or DELETE that carries an `Idempotency-Key` header from an authenticated account
//! claims the key in the Idempotency table with one conditional PutItem before its handler
//! runs, and stores the handler's response afterwards:
//!
//! - same key, same request (method, path, query, the input headers [`INPUT_HEADERS`], body)
//!   → the stored response, replayed with
//!   `Idempotent-Replayed: true`; the handler does not run again;
//! - same key, different request → 422 `idempotency_key_reused`;
//! - same key while the first request is still running → 409 `request_in_progress`;
//! - a response ≥ 500 is not kept (the record is deleted), so a retry runs again; nor is one
//!   marked [`crate::error::NotFinal`] (a 409 for a lease another request holds): the
//!   request did not run, so its retry must;
//! - records live 24 h (`expires_at`, DynamoDB's TTL, which deletes lazily: an expired record
//!   counts as absent);
//! - a claim is a lease of [`LEASE`]: a request whose instance died mid-way blocks its key
//!   for that long, then a retry of the same request takes it over.
//!
//! Handlers receive the claimed key as an [`IdempotencyKey`] (`Option<IdempotencyKey>` is an
//! extractor) and pass [`IdempotencyKey::stripe_key`] to Stripe as its `Idempotency-Key`, so a
//! retry after a crash never creates a second Stripe object.
//!
//! A handler whose effect is one DynamoDB transaction stores its answer *in* that
//! transaction ([`IdempotencyKey::completion`], then [`answered_with_effect`]): the record
//! completes exactly when the effect commits, so an instance that dies between the two, or a
//! completion write that fails, cannot leave an effect without its answer — a retry replays it
//! instead of running the handler again (a chat message counted twice, an access answered
//! "0 credits spent"). A transaction whose completion finds the claim taken over is cancelled
//! whole ([`crate::store::StoreError::ClaimLost`], a 409 the retry may repeat).

use crate::auth::Account;
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::http::BODY_LIMIT_BYTES;
use crate::keys::AccountId;
use crate::state::AppState;
use crate::tables::Table;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{OptionalFromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::convert::Infallible;

/// The request header clients send.
pub const HEADER: &str = "idempotency-key";
/// The header a replayed response carries, with the value `true`.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// How long a key and its response are kept.
pub const RETENTION: time::Duration = time::Duration::hours(24);
/// How long a claim blocks the key before a retry may take it over. Far above the
/// functions' 10 s timeout, so a live request is never taken over.
pub const LEASE: time::Duration = time::Duration::seconds(60);
/// Largest response body that is stored for replay. A larger one is returned but not kept.
pub const MAX_STORED_RESPONSE_BYTES: usize = 256 * 1024;
/// Longest accepted key.
pub const MAX_KEY_LEN: usize = 255;

/// The claimed Idempotency-Key of the current request, for its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    account: AccountId,
    key_hash: String,
    request_hash: String,
    /// The claimed record: its table, key and the claim's owner token.
    table: String,
    record_pk: String,
    owner: String,
}

impl IdempotencyKey {
    /// The account the key belongs to.
    pub fn account(&self) -> &AccountId {
        &self.account
    }

    /// A Stripe `Idempotency-Key` for one Stripe call of this request: deterministic in
    /// (account, client key, request, `operation`), so a retry of the same request sends
    /// the same key to Stripe and gets the same object back. `operation` tells apart the
    /// Stripe calls of one request (e.g. `"customer.create"`, `"checkout.session.create"`).
    /// 67 characters (`hi_` + hex SHA-256), within Stripe's 255.
    pub fn stripe_key(&self, operation: &str) -> String {
        let digest = fingerprint_parts(&[
            b"stripe",
            self.account.as_str().as_bytes(),
            self.key_hash.as_bytes(),
            self.request_hash.as_bytes(),
            operation.as_bytes(),
        ]);
        format!("hi_{digest}")
    }

    /// The write that completes this request's record with the response `status` and JSON
    /// `body`, for the transaction of the request's effect (the claim must still be ours, or
    /// the whole transaction is cancelled). Answer with [`answered_with_effect`] and the same
    /// status and body.
    pub fn completion(
        &self,
        status: StatusCode,
        body: &str,
    ) -> Result<TransactWriteItem, crate::store::StoreError> {
        let update = completion_update(
            &self.table,
            &self.record_pk,
            &self.request_hash,
            &self.owner,
            status.as_u16(),
            body.to_string(),
            Some(JSON.to_string()),
        )
        .build()
        .map_err(crate::store::build)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

const JSON: &str = "application/json";

/// Marks a response whose record completed in the effect's transaction: [`finish`] stores
/// nothing more.
#[derive(Debug, Clone, Copy)]
struct AnsweredWithEffect;

/// The JSON response whose record [`IdempotencyKey::completion`] stored with the effect.
pub fn answered_with_effect(status: StatusCode, body: String) -> Response {
    let mut response = (status, [(CONTENT_TYPE, JSON)], body).into_response();
    response.extensions_mut().insert(AnsweredWithEffect);
    response
}

/// The Stripe `Idempotency-Key` for one Stripe call: derived from the request's
/// Idempotency-Key when it has one, otherwise a fresh random key (which still makes the
/// client's resend of that call on a dead connection safe).
pub fn stripe_key_for(key: Option<&IdempotencyKey>, operation: &str) -> String {
    match key {
        Some(key) => key.stripe_key(operation),
        None => format!("hi_{}_{operation}", ulid::Ulid::generate()),
    }
}

/// `Option<IdempotencyKey>` as a handler argument: `Some` when the middleware claimed a key
/// for this request.
impl<S: Send + Sync> OptionalFromRequestParts<S> for IdempotencyKey {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts.extensions.get::<IdempotencyKey>().cloned())
    }
}

/// The partition key of a client key's record: `idem#<account>#<hex SHA-256 of the key>`.
pub fn record_pk(account: &AccountId, client_key: &str) -> String {
    format!("idem#{account}#{}", hex::encode(Sha256::digest(client_key)))
}

/// Request headers that handlers read as input: the fingerprint covers them, so the same
/// key with another end user in `X-External-User-ID` is another request (422), not a replay.
pub const INPUT_HEADERS: [&str; 1] = [crate::http::EXTERNAL_USER_HEADER];

/// The fingerprint of a request: hex SHA-256 over everything that decides its outcome —
/// method, path, query, the [`INPUT_HEADERS`] (each value, in order) and body. The account
/// is in the record's key.
pub fn request_fingerprint(
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> String {
    let mut parts: Vec<&[u8]> = vec![
        method.as_str().as_bytes(),
        path.as_bytes(),
        query.as_bytes(),
    ];
    let mut counts = Vec::new();
    for name in INPUT_HEADERS {
        let values: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
        counts.push((values.len() as u64).to_be_bytes());
        parts.extend(values);
    }
    parts.extend(counts.iter().map(|c| c.as_slice()));
    parts.push(body);
    fingerprint_parts(&parts)
}

/// SHA-256 over length-prefixed parts, so no two different part lists hash alike.
fn fingerprint_parts(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// Checks an `Idempotency-Key` header: 1–255 visible ASCII characters, sent once.
fn client_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::invalid(
            "Idempotency-Key",
            format!(
                "The Idempotency-Key header must be sent once, as 1-{MAX_KEY_LEN} visible ASCII characters (a UUID works)."
            ),
        )
    };
    if values.next().is_some() {
        return Err(invalid());
    }
    let bytes = value.as_bytes();
    let visible = bytes.iter().all(|b| b.is_ascii_graphic());
    if bytes.is_empty() || bytes.len() > MAX_KEY_LEN || !visible {
        return Err(invalid());
    }
    // Visible ASCII is valid UTF-8.
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// The middleware; `ApiRouter::into_router` applies it to every route with
/// `axum::middleware::from_fn_with_state`.
pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let unsafe_method = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::DELETE
    );
    if !unsafe_method || !request.headers().contains_key(HEADER) {
        return next.run(request).await;
    }
    // Keys are scoped per account. An unauthenticated request goes on to the handler, whose
    // `Account` extractor answers 401 (or which is public and ignores the key). A key that
    // could not be checked (the keys table failing) is answered here: the handler's own
    // check might succeed a moment later and run the request without its Idempotency-Key.
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let checked = match request.extensions().get::<Account>() {
        // Checked already by the rate limiter, for this request.
        Some(account) => Ok(account.clone()),
        None => state.auth.authenticate(&state.store, authorization).await,
    };
    let account = match checked {
        Ok(account) => account,
        Err(ApiError::MissingApiKey | ApiError::InvalidApiKey(_)) => {
            return next.run(request).await;
        }
        Err(e) => return e.into_response(),
    };
    let client_key = match client_key(request.headers()) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(request).await,
        Err(e) => return e.into_response(),
    };
    match guarded(&state, account, client_key, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn guarded(
    state: &AppState,
    account: Account,
    client_key: String,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let (parts, body) = request.into_parts();
    let body = read_limited(body, BODY_LIMIT_BYTES)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge => ApiError::PayloadTooLarge {
                limit_bytes: BODY_LIMIT_BYTES,
            }
            .into_response(),
            ReadError::Body(e) => {
                ApiError::invalid("body", format!("The request body could not be read: {e}"))
                    .into_response()
            }
        })?;
    let request_hash = request_fingerprint(
        &parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &parts.headers,
        &body,
    );
    let records = Records::new(state);
    let pk = record_pk(&account.id, &client_key);
    let owner = ulid::Ulid::generate().to_string();
    let key = IdempotencyKey {
        key_hash: hex::encode(Sha256::digest(&client_key)),
        account: account.id,
        request_hash,
        table: records.table.to_string(),
        record_pk: pk.clone(),
        owner: owner.clone(),
    };

    claim(&records, state, &pk, &key.request_hash, &owner).await?;

    let mut request = Request::from_parts(parts, Body::from(body));
    request.extensions_mut().insert(key.clone());
    let response = next.run(request).await;
    Ok(finish(&records, &pk, &key.request_hash, &owner, response).await)
}

/// Claims the key for this request, or answers for it: the replay, 409 or 422.
async fn claim(
    records: &Records<'_>,
    state: &AppState,
    pk: &str,
    request_hash: &str,
    owner: &str,
) -> Result<(), Response> {
    // A record seen absent or taken over between our PutItem and GetItem makes us try
    // again; twice more is plenty, then the caller is told to retry.
    for _ in 0..3 {
        let now = state.clock.now();
        let record = Record {
            pk: pk.to_string(),
            request_hash: request_hash.to_string(),
            state: RecordState::InProgress,
            owner: Some(owner.to_string()),
            locked_until: (now + LEASE).unix_timestamp(),
            created_at: rfc3339(now),
            expires_at: (now + RETENTION).unix_timestamp(),
            status: None,
            body: None,
            content_type: None,
        };
        let now = now.unix_timestamp();
        if records.try_claim(&record, now).await.map_err(internal)? {
            return Ok(());
        }
        let Some(existing) = records.get(pk).await.map_err(internal)? else {
            continue;
        };
        if existing.expires_at <= now {
            continue;
        }
        if existing.request_hash != request_hash {
            tracing::info!("idempotency key reused with a different request");
            return Err(ApiError::IdempotencyKeyReused.into_response());
        }
        match existing.state {
            RecordState::InProgress if existing.locked_until > now => {
                tracing::info!("idempotency key in use by a request in progress");
                return Err(ApiError::RequestInProgress.into_response());
            }
            RecordState::InProgress => continue,
            RecordState::Completed => {
                tracing::info!("replaying the stored response of an idempotent request");
                return Err(replay(&existing));
            }
        }
    }
    Err(ApiError::RequestInProgress.into_response())
}

/// Keeps the handler's response (below 500) or releases the key (500 and above).
async fn finish(
    records: &Records<'_>,
    pk: &str,
    request_hash: &str,
    owner: &str,
    response: Response,
) -> Response {
    if response.extensions().get::<AnsweredWithEffect>().is_some() {
        return response;
    }
    let status = response.status();
    let not_final = response
        .extensions()
        .get::<crate::error::NotFinal>()
        .is_some();
    if status.is_server_error() || not_final {
        release(records, pk, owner).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let fits = body
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_STORED_RESPONSE_BYTES as u64);
    if !fits {
        tracing::warn!(
            status = status.as_u16(),
            "response too large to keep for idempotent replay; the key is released"
        );
        release(records, pk, owner).await;
        return Response::from_parts(parts, body);
    }
    let bytes = match read_limited(body, MAX_STORED_RESPONSE_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            release(records, pk, owner).await;
            let detail = match e {
                ReadError::TooLarge => "response body exceeded its size hint".to_string(),
                ReadError::Body(e) => format!("reading the response body: {e}"),
            };
            return ApiError::internal(detail).into_response();
        }
    };
    let Ok(text) = String::from_utf8(bytes.to_vec()) else {
        tracing::warn!("response body is not UTF-8; not kept for idempotent replay");
        release(records, pk, owner).await;
        return Response::from_parts(parts, Body::from(bytes));
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match records
        .complete(pk, request_hash, owner, status.as_u16(), text, content_type)
        .await
    {
        Ok(true) => {}
        // Our lease ran out and a retry of the same request took the key over; it stores
        // its own response.
        Ok(false) => tracing::warn!("idempotency record was taken over before completion"),
        // The handler's work is done and its response is the truth: answer it. A retry
        // after the lease runs the handler again, with the same Stripe keys.
        Err(e) => tracing::error!(error = %e, "storing the idempotent response failed"),
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Pauses between attempts to store a response (after the SDK's own retries): the handler's
/// effect is done, and a record left in progress makes the retry run it again.
const COMPLETE_BACKOFF_MS: [u64; 3] = [50, 200, 800];

async fn release(records: &Records<'_>, pk: &str, owner: &str) {
    if let Err(e) = records.release(pk, owner).await {
        // The lease still expires: a retry takes the key over after LEASE.
        tracing::error!(error = %e, "releasing the idempotency record failed");
    }
}

fn replay(record: &Record) -> Response {
    let Some(status) = record.status.and_then(|s| StatusCode::from_u16(s).ok()) else {
        return ApiError::internal("completed idempotency record without a valid status")
            .into_response();
    };
    let mut response = Response::new(Body::from(record.body.clone().unwrap_or_default()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(ct) = record
        .content_type
        .as_deref()
        .and_then(|ct| HeaderValue::from_str(ct).ok())
    {
        headers.insert(CONTENT_TYPE, ct);
    }
    headers.insert(
        HeaderName::from_static(REPLAYED_HEADER),
        HeaderValue::from_static("true"),
    );
    response
}

fn internal(e: RecordsError) -> Response {
    ApiError::internal(e).into_response()
}

enum ReadError {
    TooLarge,
    Body(axum::Error),
}

/// Reads a whole body, refusing more than `limit` bytes.
async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, ReadError> {
    let mut buf = Vec::new();
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => return Ok(Bytes::from(buf)),
            Some(Err(e)) => return Err(ReadError::Body(e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > limit {
                        return Err(ReadError::TooLarge);
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

// --- The Idempotency table -------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RecordState {
    InProgress,
    Completed,
}

impl RecordState {
    fn as_str(self) -> &'static str {
        match self {
            RecordState::InProgress => "in_progress",
            RecordState::Completed => "completed",
        }
    }
}

/// An item of the Idempotency table.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    pk: String,
    request_hash: String,
    state: RecordState,
    /// The claim's token: only the request that claimed the key completes or releases it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    /// Unix seconds; past it, a retry of the same request may take the claim over.
    locked_until: i64,
    created_at: String,
    /// Unix seconds: DynamoDB's TTL attribute.
    expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum RecordsError {
    #[error("idempotency table: {0}")]
    Sdk(String),
    #[error("idempotency record does not decode: {0}")]
    Corrupt(String),
}

fn sdk_error(e: impl std::error::Error + 'static) -> RecordsError {
    RecordsError::Sdk(DisplayErrorContext(e).to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The update that completes a claimed record with its response, on the condition that the
/// claim is still `owner`'s.
fn completion_update(
    table: &str,
    pk: &str,
    request_hash: &str,
    owner: &str,
    status: u16,
    body: String,
    content_type: Option<String>,
) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    let set_content_type = if content_type.is_some() {
        ", content_type = :ct"
    } else {
        ""
    };
    let mut update = Update::builder()
        .table_name(table)
        .key("pk", s(pk))
        .condition_expression("#owner = :owner AND request_hash = :hash AND #state = :in_progress")
        .update_expression(format!(
            "SET #state = :completed, #status = :status, #body = :body{set_content_type} REMOVE #owner"
        ))
        .expression_attribute_names("#state", "state")
        .expression_attribute_names("#status", "status")
        .expression_attribute_names("#body", "body")
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_values(":completed", s(RecordState::Completed.as_str()))
        .expression_attribute_values(":in_progress", s(RecordState::InProgress.as_str()))
        .expression_attribute_values(":status", n(i64::from(status)))
        .expression_attribute_values(":body", AttributeValue::S(body))
        .expression_attribute_values(":owner", s(owner))
        .expression_attribute_values(":hash", s(request_hash));
    if let Some(ct) = content_type {
        update = update.expression_attribute_values(":ct", AttributeValue::S(ct));
    }
    update
}

/// The only code that talks to the Idempotency table.
struct Records<'a> {
    client: &'a aws_sdk_dynamodb::Client,
    table: &'a str,
}

impl<'a> Records<'a> {
    fn new(state: &'a AppState) -> Self {
        Self {
            client: state.store.client(),
            table: state.store.tables().get(Table::Idempotency),
        }
    }

    /// Writes `record` if the key is free: no record, an expired one, or a claim of the
    /// same request whose lease ran out. `false` when the key is not free.
    async fn try_claim(&self, record: &Record, now: i64) -> Result<bool, RecordsError> {
        let item =
            serde_dynamo::to_item(record).map_err(|e| RecordsError::Corrupt(e.to_string()))?;
        let result = self
            .client
            .put_item()
            .table_name(self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at <= :now \
                 OR (#state = :in_progress AND request_hash = :hash AND locked_until <= :now)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":in_progress", s(RecordState::InProgress.as_str()))
            .expression_attribute_values(":hash", s(&record.request_hash))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn get(&self, pk: &str) -> Result<Option<Record>, RecordsError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        out.item
            .map(|item| {
                serde_dynamo::from_item(item).map_err(|e| RecordsError::Corrupt(e.to_string()))
            })
            .transpose()
    }

    /// Stores the response on our claim, trying again after a failure
    /// ([`COMPLETE_BACKOFF_MS`]). `false` when the claim is no longer ours.
    async fn complete(
        &self,
        pk: &str,
        request_hash: &str,
        owner: &str,
        status: u16,
        body: String,
        content_type: Option<String>,
    ) -> Result<bool, RecordsError> {
        let update = completion_update(
            self.table,
            pk,
            request_hash,
            owner,
            status,
            body,
            content_type,
        );
        let mut pauses = COMPLETE_BACKOFF_MS.iter();
        loop {
            let result = self
                .client
                .update_item()
                .set_table_name(update.get_table_name().clone())
                .set_key(update.get_key().clone())
                .set_update_expression(update.get_update_expression().clone())
                .set_condition_expression(update.get_condition_expression().clone())
                .set_expression_attribute_names(update.get_expression_attribute_names().clone())
                .set_expression_attribute_values(update.get_expression_attribute_values().clone())
                .send()
                .await;
            match (crate::store::condition_held(result), pauses.next()) {
                (Err(e), Some(ms)) => {
                    tracing::warn!(error = %e, "storing the idempotent response failed; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
                }
                (Err(e), None) => return Err(RecordsError::Sdk(e.to_string())),
                (Ok(held), _) => return Ok(held),
            }
        }
    }

    /// Deletes our claim, so a retry runs the request again.
    async fn release(&self, pk: &str, owner: &str) -> Result<(), RecordsError> {
        let result = self
            .client
            .delete_item()
            .table_name(self.table)
            .key("pk", s(pk))
            .condition_expression("#owner = :owner AND #state = :in_progress")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":in_progress", s(RecordState::InProgress.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(HEADER, HeaderValue::from_bytes(v).expect("header value"));
        }
        map
    }

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters_sent_once() {
        assert_eq!(client_key(&headers(&[])).ok(), Some(None));
        assert_eq!(
            client_key(&headers(&[b"a"])).ok(),
            Some(Some("a".to_string()))
        );
        let longest = "k".repeat(255);
        assert!(client_key(&headers(&[longest.as_bytes()])).is_ok());
        let too_long = "k".repeat(256);
        for bad in [b"".as_slice(), too_long.as_bytes(), b"a b", b"caf\xc3\xa9"] {
            let err = client_key(&headers(&[bad])).expect_err("refused");
            assert!(
                matches!(&err, ApiError::InvalidRequest { field, .. } if field == "Idempotency-Key"),
                "{err:?}"
            );
        }
        assert!(client_key(&headers(&[b"a", b"a"])).is_err());
    }

    #[test]
    fn fingerprints_separate_every_part() {
        let none = HeaderMap::new();
        let user = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(
                crate::http::EXTERNAL_USER_HEADER,
                HeaderValue::from_static(v),
            );
            h
        };
        let fp = |m: &Method, p: &str, q: &str, h: &HeaderMap, b: &[u8]| {
            request_fingerprint(m, p, q, h, b)
        };
        let base = fp(&Method::POST, "/a", "x=1", &none, b"{}");
        assert_eq!(base.len(), 64);
        assert_eq!(base, fp(&Method::POST, "/a", "x=1", &none, b"{}"));
        // Headers that are not input do not count.
        let mut other_header = HeaderMap::new();
        other_header.insert("user-agent", HeaderValue::from_static("curl"));
        assert_eq!(base, fp(&Method::POST, "/a", "x=1", &other_header, b"{}"));
        let alice = fp(&Method::POST, "/a", "x=1", &user("alice"), b"{}");
        for other in [
            fp(&Method::PUT, "/a", "x=1", &none, b"{}"),
            fp(&Method::POST, "/b", "x=1", &none, b"{}"),
            fp(&Method::POST, "/a", "x=2", &none, b"{}"),
            fp(&Method::POST, "/a", "x=1", &none, b"{ }"),
            fp(&Method::POST, "/a", "x=1{", &none, b"}"),
            alice.clone(),
            fp(&Method::POST, "/a", "x=1", &user("bob"), b"{}"),
        ] {
            assert_ne!(base, other);
        }
        assert_ne!(alice, fp(&Method::POST, "/a", "x=1", &user("bob"), b"{}"));
    }

    #[test]
    fn stripe_keys_are_deterministic_per_operation() {
        let key = IdempotencyKey {
            account: AccountId::parse("acct_1").expect("valid"),
            key_hash: "k".into(),
            request_hash: "r".into(),
            table: "t".into(),
            record_pk: "p".into(),
            owner: "o".into(),
        };
        let a = key.stripe_key("checkout.session.create");
        assert_eq!(a, key.clone().stripe_key("checkout.session.create"));
        assert_ne!(a, key.stripe_key("customer.create"));
        assert!(a.len() <= 255 && a.starts_with("hi_"));
        let other_account = IdempotencyKey {
            account: AccountId::parse("acct_2").expect("valid"),
            ..key.clone()
        };
        assert_ne!(a, other_account.stripe_key("checkout.session.create"));
        assert_eq!(stripe_key_for(Some(&key), "x"), key.stripe_key("x"));
        assert_ne!(stripe_key_for(None, "x"), stripe_key_for(None, "x"));
    }
}
