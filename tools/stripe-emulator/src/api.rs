//! HTTP routing: Stripe's `/v1` API (auth, parameters, idempotency, expansion) and the
//! emulator's own `/_emulator` routes.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::store::{IdempotentResponse, State, new_id};
use crate::wire::{ApiError, ApiResult, Params, decode_pairs, parse_params};
use crate::{App, checkout, clock, customers, invoices, pages, portal, subscriptions, webhooks};

pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/_emulator/clock", get(clock_get))
        .route("/_emulator/clock/advance", post(clock_advance))
        .route("/_emulator/deliveries", get(deliveries))
        .route(
            "/_emulator/faults",
            get(crate::faults::get)
                .post(crate::faults::post)
                .delete(crate::faults::delete),
        )
        .route(
            "/c/pay/{id}",
            get(pages::checkout_page).post(pages::checkout_submit),
        )
        .route("/c/pay/{id}/3ds", post(pages::checkout_3ds))
        .route("/p/session/{id}", get(pages::portal_page))
        .route("/p/session/{id}/{action}", post(pages::portal_action))
        .fallback(stripe_api)
        .with_state(app)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, axum::Json(body.clone())).into_response()
}

fn clock_json(state: &State) -> Value {
    let now = state.now();
    json!({ "now": now, "iso": clock::format_datetime(now), "offset_seconds": state.clock_offset })
}

async fn clock_get(AxState(app): AxState<App>) -> Response {
    let body = app.with(|s| {
        let now = s.now();
        let _ = clock::advance_to(s, now);
        clock_json(s)
    });
    json_response(StatusCode::OK, &body)
}

/// `POST /_emulator/clock/advance` with `seconds=<n>` (form, query or JSON).
async fn clock_advance(
    AxState(app): AxState<App>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let params = match request_params(&headers, &uri, &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let seconds = match params.int("seconds") {
        Ok(Some(s)) if s >= 0 => s,
        Ok(_) => return ApiError::missing("seconds").into_response(),
        Err(e) => return e.into_response(),
    };
    let result = app.with(|s| {
        let target = s.now().saturating_add(seconds);
        clock::advance_to(s, target).map(|()| clock_json(s))
    });
    match result {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => e.into_response(),
    }
}

async fn deliveries(AxState(app): AxState<App>) -> Response {
    let list = app.deliveries.lock().map(|l| l.clone()).unwrap_or_default();
    json_response(StatusCode::OK, &json!({ "data": list }))
}

/// Query-string parameters merged with the body's (form-encoded, or JSON for convenience).
pub fn request_params(headers: &HeaderMap, uri: &Uri, body: &[u8]) -> ApiResult<Params> {
    let mut pairs = decode_pairs(uri.query().unwrap_or_default());
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json && !body.is_empty() {
        let mut value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("Invalid JSON body: {e}"), None))?;
        let query = parse_params(&pairs)?;
        if let (Some(obj), Value::Object(q)) = (value.as_object_mut(), query) {
            for (k, v) in q {
                obj.entry(k).or_insert(v);
            }
        }
        return Ok(Params(value));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid("Request body is not valid UTF-8.", None))?;
    pairs.extend(decode_pairs(text));
    Ok(Params(parse_params(&pairs)?))
}

fn authenticate(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(raw) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(ApiError::unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        ));
    };
    let key = if let Some(k) = raw.strip_prefix("Bearer ") {
        k.trim().to_owned()
    } else if let Some(b) = raw.strip_prefix("Basic ") {
        // `curl -u sk_test_…:` sends the key as the basic-auth user.
        decode_basic(b.trim()).unwrap_or_default()
    } else {
        String::new()
    };
    if key.starts_with("sk_test_") || key.starts_with("rk_test_") {
        return Ok(());
    }
    let shown: String = key.chars().take(8).collect();
    Err(ApiError::unauthorized(&format!(
        "Invalid API Key provided: {shown}***. The emulator accepts test-mode secret keys (sk_test_…)."
    )))
}

fn decode_basic(b64: &str) -> Option<String> {
    const TABLE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in b64.bytes().filter(|c| *c != b'=') {
        let v = u32::try_from(TABLE.iter().position(|t| *t == c)?).ok()?;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push(u8::try_from((bits >> n) & 0xff).ok()?);
        }
    }
    let s = String::from_utf8(out).ok()?;
    Some(s.split(':').next().unwrap_or_default().to_owned())
}

async fn stripe_api(
    AxState(app): AxState<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let request_id = format!("req_{}", &new_id("x")[2..16]);
    let fault = path
        .starts_with("/v1/")
        .then(|| crate::faults::take(&app.faults, &method, &path))
        .flatten();
    let mut response = match &fault {
        Some(f) if f.when == crate::faults::When::Before => crate::faults::failure(f),
        _ => handle(&app, &method, &path, &uri, &headers, &body, &request_id),
    };
    if fault.is_some_and(|f| f.when == crate::faults::When::After) {
        response
            .extensions_mut()
            .insert(crate::faults::LoseResponse);
    }
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("request-id", v);
    }
    let version = headers
        .get("stripe-version")
        .cloned()
        .unwrap_or(HeaderValue::from_static(crate::API_VERSION));
    h.insert("stripe-version", version);
    if let Some(k) = headers.get("idempotency-key") {
        h.insert("idempotency-key", k.clone());
    }
    response
}

fn handle(
    app: &App,
    method: &Method,
    path: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Response {
    if !path.starts_with("/v1/") {
        return ApiError::not_found_route(method.as_str(), path).into_response();
    }
    if let Err(e) = authenticate(headers) {
        return e.into_response();
    }
    let params = match request_params(headers, uri, body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let idem_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    if idem_key.as_ref().is_some_and(|k| k.len() > 255) {
        return ApiError::invalid(
            "Idempotency keys cannot be longer than 255 characters.",
            None,
        )
        .into_response();
    }
    let mutating = *method == Method::POST || *method == Method::DELETE;
    let fingerprint = format!("{method} {path} {}", params.0);
    app.with(|s| {
        let now = s.now();
        // Anything that fell due in real time (e.g. a session's expiry) happens first.
        let _ = clock::advance_to(s, now);
        if mutating
            && let Some(key) = &idem_key
            && let Some(stored) = s.idempotency.get(key)
        {
            if stored.fingerprint != fingerprint {
                return ApiError::invalid_code(
                    "idempotency_error",
                    format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                    ),
                    None,
                )
                .into_response();
            }
            let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
            let mut resp = json_response(status, &stored.body);
            resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            return resp;
        }
        s.current_request = Some((request_id.to_owned(), idem_key.clone()));
        let segs: Vec<&str> = path.trim_start_matches("/v1/").trim_end_matches('/').split('/').collect();
        let result = dispatch(s, method, &segs, &params).and_then(|mut v| {
            let expand = params.expand()?;
            s.expand(&mut v, &expand);
            Ok(v)
        });
        s.current_request = None;
        let (status, body) = match result {
            Ok(v) => (StatusCode::OK, v),
            Err(e) => (e.status, e.body()),
        };
        if mutating
            && let Some(key) = idem_key
            && !status.is_server_error()
        {
            s.idempotency.insert(
                key,
                IdempotentResponse { fingerprint, status: status.as_u16(), body: body.clone() },
            );
        }
        json_response(status, &body)
    })
}

fn dispatch(s: &mut State, method: &Method, segs: &[&str], p: &Params) -> ApiResult {
    let m = method.as_str();
    match (m, segs) {
        ("POST", ["customers"]) => customers::create_customer(s, p),
        ("GET", ["customers"]) => customers::list_customers(s, p),
        ("GET", ["customers", id]) => s.fetch("customer", id, "id"),
        ("POST", ["customers", id]) => customers::update_customer(s, id, p),
        ("DELETE", ["customers", id]) => customers::delete_customer(s, id),
        ("GET", ["customers", id, "payment_methods"]) => {
            customers::list_payment_methods(s, Some(id), p)
        }

        ("GET", ["products"]) => crate::catalog::list_products(s, p),
        ("POST", ["products"]) => crate::catalog::create_product(s, p),
        ("GET", ["products", id]) => s.fetch("product", id, "id"),
        ("POST", ["products", id]) => crate::catalog::update_product(s, id, p),
        ("GET", ["prices"]) => crate::catalog::list_prices(s, p),
        ("POST", ["prices"]) => crate::catalog::create_price(s, p),
        ("GET", ["prices", id]) => s.fetch("price", id, "id"),
        ("POST", ["prices", id]) => crate::catalog::update_price(s, id, p),

        ("POST", ["payment_methods"]) => customers::create_payment_method(s, p),
        ("GET", ["payment_methods"]) => customers::list_payment_methods(s, None, p),
        ("GET", ["payment_methods", id]) => customers::retrieve_payment_method(s, id),
        ("POST", ["payment_methods", id, "attach"]) => customers::attach_payment_method(s, id, p),
        ("POST", ["payment_methods", id, "detach"]) => customers::detach_payment_method(s, id),

        ("POST", ["subscriptions"]) => subscriptions::create(s, p),
        ("GET", ["subscriptions"]) => subscriptions::list(s, p),
        ("GET", ["subscriptions", id]) => subscriptions::retrieve(s, id),
        ("POST", ["subscriptions", id]) => subscriptions::update(s, id, p),
        ("DELETE", ["subscriptions", id]) => subscriptions::cancel(s, id, p),

        ("POST", ["invoices", "create_preview"]) => subscriptions::preview(s, p),
        ("GET", ["invoices"]) => invoices::list(s, p),
        ("GET", ["invoices", id]) => s.fetch("invoice", id, "id"),
        ("GET", ["invoices", id, "lines"]) => {
            let inv = s.fetch("invoice", id, "id")?;
            let items = inv["lines"]["data"].as_array().cloned().unwrap_or_default();
            crate::wire::paginate(&format!("/v1/invoices/{id}/lines"), items, p)
        }
        ("POST", ["invoices", id, "pay"]) => invoices::pay(s, id, p),
        ("POST", ["invoices", id, "void"]) => invoices::void(s, id),

        ("GET", ["payment_intents", id]) => s.fetch("payment_intent", id, "id"),
        ("GET", ["payment_intents"]) => {
            let customer = p.str("customer")?;
            let items = s
                .all("payment_intent")
                .into_iter()
                .filter(|x| {
                    customer
                        .as_ref()
                        .is_none_or(|c| x["customer"] == c.as_str())
                })
                .collect();
            crate::wire::paginate("/v1/payment_intents", items, p)
        }

        ("POST", ["checkout", "sessions"]) => checkout::create(s, p),
        ("GET", ["checkout", "sessions"]) => checkout::list(s, p),
        ("GET", ["checkout", "sessions", id]) => {
            let session = s.fetch("checkout.session", id, "session")?;
            Ok(checkout::render(s, session, &p.expand()?))
        }
        ("GET", ["checkout", "sessions", id, "line_items"]) => {
            s.fetch("checkout.session", id, "session")?;
            let items = checkout::line_items(s, id);
            crate::wire::paginate(&format!("/v1/checkout/sessions/{id}/line_items"), items, p)
        }
        ("POST", ["checkout", "sessions", id, "expire"]) => checkout::expire(s, id),

        ("POST", ["billing_portal", "sessions"]) => portal::create(s, p),
        ("GET", ["billing_portal", "configurations"]) => crate::catalog::list_portals(s, p),
        ("POST", ["billing_portal", "configurations"]) => crate::catalog::save_portal(s, None, p),
        ("GET", ["billing_portal", "configurations", id]) => {
            s.fetch("billing_portal.configuration", id, "configuration")
        }
        ("POST", ["billing_portal", "configurations", id]) => {
            crate::catalog::save_portal(s, Some(id), p)
        }

        ("GET", ["events"]) => webhooks::list_events(s, p),
        ("GET", ["events", id]) => webhooks::retrieve_event(s, id),

        ("POST", ["webhook_endpoints"]) => webhooks::create_endpoint(s, p),
        ("GET", ["webhook_endpoints"]) => webhooks::list_endpoints(s, p),
        ("GET", ["webhook_endpoints", id]) => webhooks::retrieve_endpoint(s, id),
        ("POST", ["webhook_endpoints", id]) => webhooks::update_endpoint(s, id, p),
        ("DELETE", ["webhook_endpoints", id]) => webhooks::delete_endpoint(s, id),

        _ => Err(ApiError::not_found_route(
            m,
            &format!("/v1/{}", segs.join("/")),
        )),
    }
}
