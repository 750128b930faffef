//! Stripe's wire protocol: bracket-notation form parameters, Stripe-style errors and list
//! envelopes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// A Stripe-style error: the status code and the `error` object of the body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<String>,
    pub message: String,
    pub param: Option<String>,
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&str>,
        message: String,
    ) -> Self {
        Self {
            status,
            kind,
            code: code.map(str::to_owned),
            message,
            param: None,
            extra: Map::new(),
        }
    }

    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message.into(),
        );
        e.param = param.map(str::to_owned);
        e
    }

    pub fn invalid_code(code: &str, message: impl Into<String>, param: Option<&str>) -> Self {
        let mut e = Self::invalid(message, param);
        e.code = Some(code.to_owned());
        e
    }

    pub fn missing(param: &str) -> Self {
        Self::invalid_code(
            "parameter_missing",
            format!("Missing required param: {param}."),
            Some(param),
        )
    }

    pub fn no_such(what: &str, id: &str, param: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            format!("No such {what}: '{id}'"),
        );
        e.param = Some(param.to_owned());
        e
    }

    pub fn not_found_route(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            format!("Unrecognized request URL ({method}: {path})."),
        )
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            message.to_owned(),
        )
    }

    pub fn body(&self) -> Value {
        let mut err = Map::new();
        err.insert("type".into(), json!(self.kind));
        if let Some(code) = &self.code {
            err.insert("code".into(), json!(code));
        }
        err.insert("message".into(), json!(self.message));
        if let Some(param) = &self.param {
            err.insert("param".into(), json!(param));
        }
        if let Some(code) = &self.code {
            err.insert(
                "doc_url".into(),
                json!(format!(
                    "https://stripe.com/docs/error-codes/{}",
                    code.replace('_', "-")
                )),
            );
        }
        for (k, v) in &self.extra {
            err.insert(k.clone(), v.clone());
        }
        json!({ "error": Value::Object(err) })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

pub type ApiResult<T = Value> = Result<T, ApiError>;

/// Decodes `application/x-www-form-urlencoded` pairs (also query strings).
pub fn decode_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `a[b][0][]` into `["a", "b", "0", ""]`.
fn split_key(key: &str) -> Option<Vec<String>> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => return Some(vec![key.to_owned()]),
    };
    let mut parts = vec![head.to_owned()];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        parts.push(inner[..end].to_owned());
        rest = &inner[end + 1..];
    }
    Some(parts)
}

/// Builds the nested parameter tree Stripe's bracket notation describes. Objects whose keys
/// are all indices become arrays, in index order.
pub fn parse_params(pairs: &[(String, String)]) -> ApiResult<Value> {
    let mut root = Value::Object(Map::new());
    for (key, value) in pairs {
        let parts = split_key(key).ok_or_else(|| {
            ApiError::invalid(format!("Invalid parameter name: {key}"), Some(key))
        })?;
        insert(&mut root, &parts, value.clone(), key)?;
    }
    Ok(normalize(root))
}

fn insert(node: &mut Value, parts: &[String], value: String, key: &str) -> ApiResult<()> {
    let Some((first, rest)) = parts.split_first() else {
        return Ok(());
    };
    let clash = || ApiError::invalid(format!("Invalid parameter structure at {key}"), Some(key));
    if first.is_empty() {
        // `a[]=x`: append to a list.
        if !node.is_array() {
            if node.as_object().is_some_and(|m| m.is_empty()) {
                *node = Value::Array(vec![]);
            } else {
                return Err(clash());
            }
        }
        let arr = node.as_array_mut().ok_or_else(clash)?;
        if rest.is_empty() {
            arr.push(Value::String(value));
        } else {
            let mut child = Value::Object(Map::new());
            insert(&mut child, rest, value, key)?;
            arr.push(child);
        }
        return Ok(());
    }
    let map = node.as_object_mut().ok_or_else(clash)?;
    if rest.is_empty() {
        map.insert(first.clone(), Value::String(value));
        return Ok(());
    }
    let child = map
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if child.is_string() {
        // `metadata=` (empty) followed by `metadata[k]=v`.
        *child = Value::Object(Map::new());
    }
    insert(child, rest, value, key)
}

fn normalize(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let all_indices = !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok());
            if all_indices {
                let mut entries: Vec<(usize, Value)> = map
                    .into_iter()
                    .filter_map(|(k, v)| k.parse::<usize>().ok().map(|i| (i, normalize(v))))
                    .collect();
                entries.sort_by_key(|(i, _)| *i);
                Value::Array(entries.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(map.into_iter().map(|(k, v)| (k, normalize(v))).collect())
            }
        }
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        other => other,
    }
}

/// Typed access to a request's parameter tree, with Stripe-style errors.
#[derive(Debug, Clone)]
pub struct Params(pub Value);

impl Params {
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut cur = &self.0;
        for part in path.split('.') {
            cur = match cur {
                Value::Object(m) => m.get(part)?,
                Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// A string parameter; an empty string counts as absent.
    pub fn str(&self, path: &str) -> ApiResult<Option<String>> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(ApiError::invalid(
                format!("Invalid string: {}", dotted_to_bracket(path)),
                Some(&dotted_to_bracket(path)),
            )),
        }
    }

    pub fn req_str(&self, path: &str) -> ApiResult<String> {
        self.str(path)?
            .ok_or_else(|| ApiError::missing(&dotted_to_bracket(path)))
    }

    pub fn bool(&self, path: &str) -> ApiResult<Option<bool>> {
        match self.str(path)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::invalid(
                format!("Invalid boolean: {}", dotted_to_bracket(path)),
                Some(&dotted_to_bracket(path)),
            )),
        }
    }

    pub fn int(&self, path: &str) -> ApiResult<Option<i64>> {
        match self.str(path)? {
            None => Ok(None),
            Some(s) => s.trim().parse::<i64>().map(Some).map_err(|_| {
                ApiError::invalid(
                    format!("Invalid integer: {s}"),
                    Some(&dotted_to_bracket(path)),
                )
            }),
        }
    }

    /// A list parameter (`a[0][..]`, `a[]`); absent is empty.
    pub fn list(&self, path: &str) -> ApiResult<Vec<Params>> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::String(s)) if s.is_empty() => Ok(vec![]),
            Some(Value::Array(a)) => Ok(a.iter().cloned().map(Params).collect()),
            Some(_) => Err(ApiError::invalid(
                format!("Invalid array: {}", dotted_to_bracket(path)),
                Some(&dotted_to_bracket(path)),
            )),
        }
    }

    pub fn strings(&self, path: &str) -> ApiResult<Vec<String>> {
        self.list(path)?
            .into_iter()
            .map(|p| match p.0 {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::invalid(
                    format!("Invalid array of strings: {}", dotted_to_bracket(path)),
                    Some(&dotted_to_bracket(path)),
                )),
            })
            .collect()
    }

    /// A metadata-style map of strings; `Some(empty)` when explicitly cleared with `key=`.
    pub fn string_map(&self, path: &str) -> ApiResult<Option<Map<String, Value>>> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(Some(Map::new())),
            Some(Value::Object(m)) => {
                let mut out = Map::new();
                for (k, v) in m {
                    match v {
                        Value::String(s) => {
                            out.insert(k.clone(), Value::String(s.clone()));
                        }
                        Value::Number(n) => {
                            out.insert(k.clone(), Value::String(n.to_string()));
                        }
                        Value::Bool(b) => {
                            out.insert(k.clone(), Value::String(b.to_string()));
                        }
                        _ => {
                            return Err(ApiError::invalid(
                                format!(
                                    "Invalid {}[{k}]: must be a string",
                                    dotted_to_bracket(path)
                                ),
                                Some(&format!("{}[{k}]", dotted_to_bracket(path))),
                            ));
                        }
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(ApiError::invalid(
                format!("Invalid hash: {}", dotted_to_bracket(path)),
                Some(&dotted_to_bracket(path)),
            )),
        }
    }

    pub fn expand(&self) -> ApiResult<Vec<String>> {
        self.strings("expand")
    }
}

/// `a.b.0` → `a[b][0]`, the way Stripe names parameters in errors.
pub fn dotted_to_bracket(path: &str) -> String {
    let mut parts = path.split('.');
    let mut out = parts.next().unwrap_or_default().to_owned();
    for p in parts {
        out.push('[');
        out.push_str(p);
        out.push(']');
    }
    out
}

/// Merges metadata the way Stripe does: empty values delete keys.
pub fn merge_metadata(target: &mut Value, update: Map<String, Value>, replace_all: bool) {
    if !target.is_object() || replace_all {
        *target = Value::Object(Map::new());
    }
    if let Some(map) = target.as_object_mut() {
        for (k, v) in update {
            if v.as_str().is_some_and(str::is_empty) {
                map.remove(&k);
            } else {
                map.insert(k, v);
            }
        }
    }
}

/// Stripe's list envelope.
pub fn list(url: &str, data: Vec<Value>, has_more: bool) -> Value {
    json!({ "object": "list", "data": data, "has_more": has_more, "url": url })
}

/// Applies Stripe's cursor pagination (`limit`, `starting_after`, `ending_before`) to items
/// already in Stripe's order (newest first).
pub fn paginate(url: &str, items: Vec<Value>, params: &Params) -> ApiResult<Value> {
    let limit = params.int("limit")?.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(
            "Invalid limit: must be between 1 and 100",
            Some("limit"),
        ));
    }
    let limit = usize::try_from(limit).unwrap_or(10);
    let id_of = |v: &Value| v.get("id").and_then(Value::as_str).map(str::to_owned);
    let (start, end) = if let Some(after) = params.str("starting_after")? {
        let pos = items
            .iter()
            .position(|v| id_of(v).as_deref() == Some(after.as_str()))
            .ok_or_else(|| ApiError::no_such("object", &after, "starting_after"))?;
        (pos + 1, (pos + 1 + limit).min(items.len()))
    } else if let Some(before) = params.str("ending_before")? {
        let pos = items
            .iter()
            .position(|v| id_of(v).as_deref() == Some(before.as_str()))
            .ok_or_else(|| ApiError::no_such("object", &before, "ending_before"))?;
        (pos.saturating_sub(limit), pos)
    } else {
        (0, limit.min(items.len()))
    };
    let has_more = if params.str("ending_before")?.is_some() {
        start > 0
    } else {
        end < items.len()
    };
    let page = items.into_iter().skip(start).take(end - start).collect();
    Ok(list(url, page, has_more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_become_nested_objects_and_lists() {
        let pairs = decode_pairs(
            "items%5B0%5D%5Bprice%5D=price_a&items[1][price]=price_b&metadata[k]=v+w&expand[]=a&expand[]=b&x=%E2%82%AC",
        );
        let p = Params(parse_params(&pairs).unwrap());
        assert_eq!(p.str("items.0.price").unwrap().as_deref(), Some("price_a"));
        assert_eq!(p.str("items.1.price").unwrap().as_deref(), Some("price_b"));
        assert_eq!(p.str("metadata.k").unwrap().as_deref(), Some("v w"));
        assert_eq!(p.expand().unwrap(), vec!["a", "b"]);
        assert_eq!(p.str("x").unwrap().as_deref(), Some("€"));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for raw in [
            "a[=1",
            "a=1&a[b]=2",
            "%",
            "%zz=1",
            "a[0]=1&a[]=2",
            "[]=x",
            "a]]=1",
        ] {
            let _ = parse_params(&decode_pairs(raw));
        }
        assert!(parse_params(&decode_pairs("a[b=1")).is_err());
    }
}
