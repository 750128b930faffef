//! Fault control, `/_emulator/faults`: makes the next matching requests fail on purpose, so
//! tests, the simulation and anyone debugging can see what the API does when Stripe misbehaves.
//!
//! - `when=before`: the request fails before it has any effect, with Stripe's `api_error`
//!   body and status 500 (or `status`; with a 4xx, `param` and `message` may say which
//!   parameter Stripe refuses and why, as Stripe's `invalid_request_error` does);
//! - `when=after`: the request takes effect, then its response is lost: the connection is
//!   closed unanswered, as when a response times out or a Lambda dies mid-call.

use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use std::sync::{Arc, Mutex};

use crate::App;
use crate::store::new_id;
use crate::wire::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    Before,
    After,
}

/// One armed fault, as `GET /_emulator/faults` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub id: String,
    /// `GET`, `POST` or `DELETE`; any method when absent.
    pub method: Option<String>,
    /// Matches request paths that start with it (`/v1/subscriptions`).
    pub path_prefix: String,
    pub when: When,
    /// How many more matching requests fail.
    pub remaining: u32,
    /// The status of a `before` failure (500 when absent).
    pub status: Option<u16>,
    /// The parameter a `before` failure blames (Stripe's `error.param`).
    pub param: Option<String>,
    /// The message of a `before` failure, instead of the default one.
    pub message: Option<String>,
}

pub type Faults = Arc<Mutex<Vec<Fault>>>;

/// A response marked to be lost: the server closes the connection instead of sending it.
#[derive(Debug, Clone, Copy)]
pub struct LoseResponse;

/// The fault the request `method path` triggers, if any; it counts against the fault's `count`.
pub fn take(faults: &Faults, method: &Method, path: &str) -> Option<Fault> {
    let mut armed = faults.lock().unwrap_or_else(|p| p.into_inner());
    let index = armed.iter().position(|f| {
        f.remaining > 0
            && path.starts_with(&f.path_prefix)
            && f.method.as_deref().is_none_or(|m| m == method.as_str())
    })?;
    let fault = &mut armed[index];
    fault.remaining -= 1;
    let taken = fault.clone();
    if fault.remaining == 0 {
        armed.remove(index);
    }
    Some(taken)
}

/// Stripe's answer to a request failed by a `before` fault.
pub fn failure(fault: &Fault) -> Response {
    let status = fault
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, code, message) = match status.as_u16() {
        429 => (
            "invalid_request_error",
            Some("rate_limit"),
            "Too many requests hit the API too quickly.",
        ),
        500.. => (
            "api_error",
            None,
            "An unknown error occurred (injected by the emulator's fault control).",
        ),
        _ => (
            "invalid_request_error",
            None,
            "The request failed (injected by the emulator's fault control).",
        ),
    };
    let mut error = ApiError::new(
        status,
        kind,
        code,
        fault.message.clone().unwrap_or_else(|| message.into()),
    );
    error.param = fault.param.clone();
    error.into_response()
}

fn arm(faults: &Faults, params: &crate::wire::Params) -> Result<Fault, ApiError> {
    let method = params.str("method")?.map(|m| m.to_ascii_uppercase());
    if method
        .as_deref()
        .is_some_and(|m| !matches!(m, "GET" | "POST" | "DELETE"))
    {
        return Err(ApiError::invalid(
            "method must be GET, POST or DELETE.",
            Some("method"),
        ));
    }
    let path_prefix = params.req_str("path_prefix")?;
    if !path_prefix.starts_with("/v1/") {
        return Err(ApiError::invalid(
            "path_prefix must start with /v1/.",
            Some("path_prefix"),
        ));
    }
    let when = match params.str("when")?.as_deref() {
        None | Some("before") => When::Before,
        Some("after") => When::After,
        Some(_) => {
            return Err(ApiError::invalid(
                "when must be before or after.",
                Some("when"),
            ));
        }
    };
    let count = params.int("count")?.unwrap_or(1);
    let remaining = u32::try_from(count)
        .ok()
        .filter(|c| (1..=10_000).contains(c))
        .ok_or_else(|| ApiError::invalid("count must be 1 to 10000.", Some("count")))?;
    let status = match params.int("status")? {
        None => None,
        Some(s) if (400..=599).contains(&s) => u16::try_from(s).ok(),
        Some(_) => {
            return Err(ApiError::invalid(
                "status must be 400 to 599.",
                Some("status"),
            ));
        }
    };
    let fault = Fault {
        id: new_id("flt"),
        method,
        path_prefix,
        when,
        remaining,
        status,
        param: params.str("param")?,
        message: params.str("message")?,
    };
    faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(fault.clone());
    Ok(fault)
}

fn listed(faults: &Faults) -> Response {
    let armed = faults.lock().unwrap_or_else(|p| p.into_inner()).clone();
    axum::Json(json!({ "object": "list", "data": armed })).into_response()
}

/// `POST /_emulator/faults` (form, query or JSON): `method`, `path_prefix`, `when`, `count`,
/// `status`, `param`, `message`; answers the armed fault.
pub async fn post(
    AxState(app): AxState<App>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let result =
        crate::api::request_params(&headers, &uri, &body).and_then(|p| arm(&app.faults, &p));
    match result {
        Ok(fault) => axum::Json(fault).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /_emulator/faults`: the armed faults.
pub async fn get(AxState(app): AxState<App>) -> Response {
    listed(&app.faults)
}

/// `DELETE /_emulator/faults`: disarms every fault.
pub async fn delete(AxState(app): AxState<App>) -> Response {
    app.faults.lock().unwrap_or_else(|p| p.into_inner()).clear();
    listed(&app.faults)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(method: Option<&str>, prefix: &str, remaining: u32) -> Fault {
        Fault {
            id: new_id("flt"),
            method: method.map(str::to_owned),
            path_prefix: prefix.into(),
            when: When::Before,
            remaining,
            status: None,
            param: None,
            message: None,
        }
    }

    #[test]
    fn a_fault_matches_its_method_and_prefix_count_times() {
        let faults: Faults = Arc::new(Mutex::new(vec![fault(
            Some("POST"),
            "/v1/subscriptions",
            2,
        )]));
        assert!(take(&faults, &Method::GET, "/v1/subscriptions/sub_1").is_none());
        assert!(take(&faults, &Method::POST, "/v1/customers").is_none());
        assert!(take(&faults, &Method::POST, "/v1/subscriptions/sub_1").is_some());
        assert!(take(&faults, &Method::POST, "/v1/subscriptions").is_some());
        assert!(take(&faults, &Method::POST, "/v1/subscriptions").is_none());
        assert!(faults.lock().unwrap().is_empty());
    }
}
