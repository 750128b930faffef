//! `ApiError`: every error the API answers, rendered exactly in the spec's error format
//! `{"error": {"code": …, "message": …, …}}`. Internals never reach the body; they go to
//! the log inside the request's span, which carries the request id.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 400: a missing, malformed or out-of-range input; `field` names it.
    InvalidRequest { field: String, message: String },
    /// 401: no `Authorization: Bearer …` header.
    MissingApiKey,
    /// 401: a key that is malformed, unknown, revoked, or of the other mode.
    InvalidApiKey(String),
    /// 404: no such resource (or route) for this account.
    NotFound(String),
    /// 405: the path exists, the method does not (axum adds the `Allow` header).
    MethodNotAllowed,
    /// 413: the body is larger than the API accepts.
    PayloadTooLarge { limit_bytes: usize },
    /// 500: our fault. The detail is logged, never rendered.
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        ApiError::Internal(detail.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::MissingApiKey | ApiError::InvalidApiKey(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. } => "invalid_request",
            ApiError::MissingApiKey => "missing_api_key",
            ApiError::InvalidApiKey(_) => "invalid_api_key",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The `error` object of the body.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code()));
        let message = match self {
            ApiError::InvalidRequest { message, .. } => message.clone(),
            ApiError::MissingApiKey => {
                "Missing API key. Send it as `Authorization: Bearer hi_live_…` (or `hi_test_…`).".into()
            }
            ApiError::InvalidApiKey(message) | ApiError::NotFound(message) => message.clone(),
            ApiError::MethodNotAllowed => "This path does not accept that method; the Allow header lists the ones it does.".into(),
            ApiError::PayloadTooLarge { limit_bytes } => {
                format!("Request body is larger than the {limit_bytes}-byte limit.")
            }
            ApiError::Internal(_) => {
                "An internal error occurred. Quote the x-request-id response header if you contact support."
                    .into()
            }
        };
        error.insert("message".into(), json!(message));
        if let ApiError::InvalidRequest { field, .. } = self {
            error.insert("field".into(), json!(field));
        }
        json!({ "error": error })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(detail = %detail, "internal error");
        }
        (self.status(), axum::Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_request_names_the_field() {
        let e = ApiError::invalid("tier", "tier must be a string");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            e.body(),
            json!({"error": {"code": "invalid_request", "message": "tier must be a string", "field": "tier"}})
        );
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let e = ApiError::internal("ResourceNotFoundException: table billing-api-keys");
        let rendered = e.body().to_string();
        assert!(!rendered.contains("billing-api-keys"), "{rendered}");
        assert_eq!(e.body()["error"]["code"], "internal_error");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn each_error_has_its_status_and_code() {
        let cases = [
            (ApiError::MissingApiKey, 401, "missing_api_key"),
            (ApiError::InvalidApiKey("x".into()), 401, "invalid_api_key"),
            (ApiError::NotFound("x".into()), 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (
                ApiError::PayloadTooLarge { limit_bytes: 10 },
                413,
                "payload_too_large",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.body()["error"]["code"], code);
            assert!(
                e.body()["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
    }
}
