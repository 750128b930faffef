//! HTTP plumbing shared by every function: the route table ([`ApiRouter`]), the JSON body
//! extractor that answers in the spec's error format, the 404/405 fallbacks, request ids
//! and request spans.

pub mod idempotency;
pub mod ratelimit;

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use serde::de::DeserializeOwned;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

/// Where the OpenAPI document is served (billing function).
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// Largest request body the API reads. Every request body of the spec is far smaller.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// The header that may name the end user of a request instead of its body or query
/// (`POST /v1/credits/access`).
pub const EXTERNAL_USER_HEADER: &str = "x-external-user-id";

/// One route of the API: what template.yaml must declare.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub method: String,
    pub path: &'static str,
}

/// An axum router that also records its routes, so the route table can be checked against
/// template.yaml. Function crates build one; `into_router` finishes it.
#[derive(Default)]
pub struct ApiRouter {
    router: Router<AppState>,
    routes: Vec<Route>,
}

impl ApiRouter {
    pub fn new() -> Self {
        Self::default()
    }

    fn add<H, T>(
        mut self,
        method: Method,
        filter: MethodFilter,
        path: &'static str,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, on(filter, handler));
        self.routes.push(Route {
            method: method.to_string(),
            path,
        });
        self
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::GET, MethodFilter::GET, path, handler)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::POST, MethodFilter::POST, path, handler)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::PUT, MethodFilter::PUT, path, handler)
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
    ) -> Self {
        self.add(Method::DELETE, MethodFilter::DELETE, path, handler)
    }

    pub fn merge(mut self, other: ApiRouter) -> Self {
        self.router = self.router.merge(other.router);
        self.routes.extend(other.routes);
        self
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The finished service: per-key rate limits and Idempotency-Key handling on every
    /// route, fallbacks in the
    /// spec's error format, body limit, request ids and a tracing span per request.
    pub fn into_router(self, state: AppState) -> Router {
        self.router
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                idempotency::middleware,
            ))
            .route_layer(axum::middleware::from_fn(stripe_budget))
            // A refused request claims no Idempotency-Key.
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                ratelimit::middleware,
            ))
            // Outermost of the route layers: every answer of a route is measured.
            .route_layer(axum::middleware::from_fn(measure))
            .fallback(route_not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
            .layer(SetRequestIdLayer::x_request_id(LambdaOrFreshId))
            .with_state(state)
    }
}

/// The functions' timeout (template.yaml), under API Gateway's 30 s.
pub const FUNCTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);
/// What one request may spend on Stripe calls in all: the function's timeout less 5 s for
/// its DynamoDB writes and the answer. Each call also has its own bound (8 s).
pub const STRIPE_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

/// Every request's Stripe calls share [`STRIPE_BUDGET`] ([`crate::stripe::with_budget`]), so
/// a request that makes several ends inside the function's timeout with an answer (a 502 the
/// client may retry with its Idempotency-Key) instead of being killed mid-way.
async fn stripe_budget(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    crate::stripe::with_budget(STRIPE_BUDGET, next.run(request)).await
}

/// Records the request's metrics (`crate::metrics`): its route and status class, latency,
/// an idempotent replay, a rate-limit refusal with the key's plan; then writes them (in
/// Lambda, where a recorder is installed: one EMF flush per invocation).
async fn measure(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    crate::metrics::request(&route, status, started.elapsed());
    let headers = response.headers();
    if headers
        .get(idempotency::REPLAYED_HEADER)
        .is_some_and(|v| v == "true")
    {
        crate::metrics::idempotent_replay(&route);
    }
    if status == 429
        && let Some(plan) = headers
            .get(ratelimit::POLICY_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split('"').nth(1))
    {
        crate::metrics::rate_limited(plan);
    }
    crate::metrics::flush();
    response
}

/// Marks a response produced by a fallback: the request matched no route. Tests use it to
/// tell "no such route" from a handler's own 404.
#[derive(Debug, Clone, Copy)]
pub struct Unrouted;

async fn route_not_found() -> Response {
    let mut response =
        ApiError::NotFound("No such route. See the API reference for the paths it serves.".into())
            .into_response();
    response.extensions_mut().insert(Unrouted);
    response
}

async fn method_not_allowed() -> Response {
    let mut response = ApiError::MethodNotAllowed.into_response();
    response.extensions_mut().insert(Unrouted);
    response
}

/// In Lambda the request id is Lambda's own (so logs, API Gateway and the caller agree);
/// elsewhere a fresh ULID.
#[derive(Debug, Clone, Copy)]
struct LambdaOrFreshId;

impl MakeRequestId for LambdaOrFreshId {
    fn make_request_id<B>(&mut self, request: &axum::http::Request<B>) -> Option<RequestId> {
        let id = request
            .extensions()
            .get::<lambda_http::Context>()
            .map(|ctx| ctx.request_id.clone())
            .unwrap_or_else(|| ulid::Ulid::generate().to_string());
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    // The path only: query strings may carry end users' ids, headers carry keys.
    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
}

/// The one `{id}` segment of a path. An undecodable segment names nothing the caller owns:
/// 404 in the spec's format, like any other unknown id.
#[derive(Debug, Clone)]
pub struct PathId(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(id)| PathId(id))
            .map_err(|_| ApiError::NotFound("No such object.".into()))
    }
}

/// A JSON request body, parsed into `T`; every failure is a 4xx in the spec's format that
/// names the offending field.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !is_json {
            return Err(ApiError::invalid(
                "Content-Type",
                "Send the body as JSON with `Content-Type: application/json`.",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| body_error(&rejection, BODY_LIMIT_BYTES))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A body that could not be read, in the spec's format (axum's own rejection is plain text):
/// 413 past `limit_bytes`, the route's bound, else 400.
pub fn body_error(
    rejection: &axum::extract::rejection::BytesRejection,
    limit_bytes: usize,
) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit_bytes }
    } else {
        ApiError::invalid(
            "body",
            format!("The request body could not be read: {rejection}"),
        )
    }
}

/// Parses JSON into `T`, naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => {
            return de.end().map(|()| value).map_err(|e| {
                ApiError::invalid("body", format!("The request body is not valid JSON: {e}"))
            });
        }
        Err(err) => err,
    };
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return Err(ApiError::invalid(
            "body",
            format!("The request body is not valid JSON: {inner}"),
        ));
    }
    let message = inner.to_string();
    let field = if path == "." {
        // serde reports a missing field at its parent; take the name from the message.
        message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .unwrap_or("body")
            .to_string()
    } else {
        path
    };
    Err(ApiError::invalid(
        field.clone(),
        format!("Invalid `{field}`: {message}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        tier: String,
        #[serde(default)]
        ids: Vec<String>,
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::InvalidRequest { field, .. } => field,
            other => panic!("expected invalid_request, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_valid_body() {
        let body: Body = parse_json(br#"{"tier":"pro"}"#).expect("valid");
        assert_eq!(
            body,
            Body {
                tier: "pro".into(),
                ids: vec![]
            }
        );
    }

    #[test]
    fn names_a_missing_field() {
        assert_eq!(field_of(parse_json::<Body>(b"{}").unwrap_err()), "tier");
    }

    #[test]
    fn names_an_ill_typed_field() {
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"tier": 5}"#).unwrap_err()),
            "tier"
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"tier":"pro","ids":["a",3]}"#).unwrap_err()),
            "ids[1]"
        );
    }

    #[test]
    fn rejects_broken_and_trailing_json() {
        assert_eq!(
            field_of(parse_json::<Body>(b"{\"tier\":").unwrap_err()),
            "body"
        );
        assert_eq!(field_of(parse_json::<Body>(b"").unwrap_err()), "body");
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"tier":"pro"} x"#).unwrap_err()),
            "body"
        );
    }
}
