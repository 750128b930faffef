//! A query-string extractor that answers bad input in the spec's error format, naming the
//! parameter at fault.

use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        let field = if path == "." {
            message
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
                .unwrap_or("query")
                .to_string()
        } else {
            path
        };
        ApiError::invalid(
            field.clone(),
            format!("Invalid query parameter `{field}`: {message}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Page {
        external_user_id: String,
        limit: Option<u32>,
    }

    #[test]
    fn parses_and_names_the_bad_parameter() {
        let p: Page = parse_query("external_user_id=u%201&limit=5").unwrap();
        assert_eq!(
            p,
            Page {
                external_user_id: "u 1".into(),
                limit: Some(5)
            }
        );
        let missing = parse_query::<Page>("limit=5").unwrap_err();
        assert_eq!(missing.body()["error"]["field"], "external_user_id");
        let bad = parse_query::<Page>("external_user_id=u&limit=-1").unwrap_err();
        assert_eq!(bad.body()["error"]["field"], "limit");
    }
}
