//! Typed request values: each constructor is the only place its check lives, so a handler
//! holding one cannot hold an invalid one ("parse, don't validate").

use crate::catalog::Tier;
use crate::config::Stage;

/// Why an input was refused: the API renders it as a 400 (`crate::error::ApiError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// A missing, malformed or out-of-range input; `field` names it.
    Invalid { field: String, message: String },
    /// A tier that is not a paid one (the spec's `invalid_tier`), at most 64 characters of it.
    Tier(String),
}

impl InputError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        InputError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A tier a customer can buy: pro or enterprise.
pub fn paid_tier(raw: &str) -> Result<Tier, InputError> {
    match raw {
        "pro" => Ok(Tier::Pro),
        "enterprise" => Ok(Tier::Enterprise),
        other => Err(InputError::Tier(other.chars().take(64).collect())),
    }
}

/// The end user of an API customer (B2B2C): 1–255 characters, none of them a control
/// character — whatever identity providers issue (`auth0|5f7c…`, `google-oauth2|1043…`,
/// e-mail addresses, any script). Inside keys it appears as [`ExternalUserId::key_form`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[schema(
    min_length = 1,
    max_length = 255,
    pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]{1,255}$",
    example = "auth0|5f7c8ec7c33c6c004bbafe82"
)]
pub struct ExternalUserId(String);

pub const EXTERNAL_USER_ID_MAX: usize = 255;

/// Characters an id keeps as they are inside keys: those every id was once limited to.
fn plain_in_keys(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._-:@+".contains(&b)
}

impl ExternalUserId {
    pub fn parse(field: &str, raw: &str) -> Result<Self, InputError> {
        let length = raw.chars().count();
        let ok = (1..=EXTERNAL_USER_ID_MAX).contains(&length) && !raw.chars().any(char::is_control);
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(InputError::invalid(
                field,
                format!(
                    "`{field}` must be 1-{EXTERNAL_USER_ID_MAX} characters, none of them a control character"
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id inside keys (sort keys, partition keys, Stripe metadata): itself when made only
    /// of `A–Z a–z 0–9 . _ - : @ +` (every id accepted before, so stored items keep their
    /// keys); otherwise each UTF-8 byte outside that set as `%XX`; and when that is longer
    /// than 255 bytes, `~` and the hex SHA-256 of the id. No two ids share a key form (the
    /// three forms cannot meet: only the second contains `%`, only the third starts with
    /// `~`, which the second would encode), and no key form contains a separator (`#`, `|`).
    pub fn key_form(&self) -> std::borrow::Cow<'_, str> {
        if self.0.bytes().all(plain_in_keys) {
            return std::borrow::Cow::Borrowed(&self.0);
        }
        let mut encoded = String::with_capacity(self.0.len() * 3);
        for b in self.0.bytes() {
            if plain_in_keys(b) {
                encoded.push(char::from(b));
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        if encoded.len() > EXTERNAL_USER_ID_MAX {
            use sha2::Digest;
            encoded = format!("~{}", hex::encode(sha2::Sha256::digest(self.0.as_bytes())));
        }
        std::borrow::Cow::Owned(encoded)
    }
}

/// Whose plan or credits: the API customer's own account, or one of its end users.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Account,
    User(ExternalUserId),
}

impl Subject {
    /// The account's own key form.
    pub const ACCOUNT_KEY: &'static str = "self";

    /// From an optional `external_user_id` input.
    pub fn from_input(field: &str, external_user_id: Option<&str>) -> Result<Self, InputError> {
        match external_user_id {
            None => Ok(Subject::Account),
            Some(raw) => ExternalUserId::parse(field, raw).map(Subject::User),
        }
    }

    /// The sort key and metadata form: `self` or `user#<key form of the id>`.
    pub fn key(&self) -> String {
        match self {
            Subject::Account => Self::ACCOUNT_KEY.to_string(),
            Subject::User(id) => format!("user#{}", id.key_form()),
        }
    }

    /// Whether `key` is a subject's key form (what our Stripe metadata carries).
    pub fn is_key(key: &str) -> bool {
        key == Self::ACCOUNT_KEY
            || key.strip_prefix("user#").is_some_and(|id| {
                (1..=EXTERNAL_USER_ID_MAX).contains(&id.len())
                    && id
                        .bytes()
                        .all(|b| plain_in_keys(b) || b == b'%' || b == b'~')
            })
    }

    pub fn external_user_id(&self) -> Option<&str> {
        match self {
            Subject::Account => None,
            Subject::User(id) => Some(id.as_str()),
        }
    }
}

/// Document ids for one access request: 1–50 distinct ids (DynamoDB writes at most 100 items
/// in one transaction, and each new document is one), each 1–128 characters of
/// `A–Z a–z 0–9 . _ - :`. Duplicates are dropped, order kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisIds(Vec<String>);

pub const MAX_ANALYSIS_IDS: usize = 50;

impl AnalysisIds {
    pub fn parse(field: &str, raw: Vec<String>) -> Result<Self, InputError> {
        let mut ids: Vec<String> = Vec::with_capacity(raw.len().min(MAX_ANALYSIS_IDS));
        for id in raw {
            let ok = !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
            if !ok {
                return Err(InputError::invalid(
                    field,
                    format!("Each of `{field}` must be 1-128 characters of A-Z a-z 0-9 . _ - :"),
                ));
            }
            if !ids.contains(&id) {
                ids.push(id);
            }
            if ids.len() > MAX_ANALYSIS_IDS {
                return Err(InputError::invalid(
                    field,
                    format!("At most {MAX_ANALYSIS_IDS} distinct `{field}` per request."),
                ));
            }
        }
        if ids.is_empty() {
            return Err(InputError::invalid(
                field,
                format!("`{field}` must list at least one document id."),
            ));
        }
        Ok(Self(ids))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// An email for Stripe Checkout, of the kind Stripe takes: at most 254 characters; a local
/// part of ASCII letters, digits and ``!#$%&'*+/=?^_`{|}~-`` in dot-separated runs; an `@`;
/// a domain of dot-separated DNS labels (letters, digits, inner hyphens, 1–63 each) ending in
/// a top-level domain of 2–63 letters. Stripe refuses addresses it cannot deliver to; taking
/// only these keeps a caller's typo a 400 here, before any Stripe call.
pub fn customer_email(field: &str, raw: &str) -> Result<String, InputError> {
    let local_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let ok = raw.len() <= 254
        && raw.split_once('@').is_some_and(|(local, domain)| {
            let labels: Vec<&str> = domain.split('.').collect();
            local
                .split('.')
                .all(|run| !run.is_empty() && run.chars().all(local_char))
                && labels.len() >= 2
                && labels.iter().all(|l| label_ok(l))
                && labels.last().is_some_and(|tld| {
                    (2..=63).contains(&tld.len()) && tld.chars().all(|c| c.is_ascii_alphabetic())
                })
        });
    if ok {
        Ok(raw.to_string())
    } else {
        Err(InputError::invalid(
            field,
            format!("`{field}` must be an email address"),
        ))
    }
}

/// An absolute http(s) URL to send a payer back to; https only on the live stage: at most
/// 2048 characters without spaces or control characters; `https://` (or `http://`), a host
/// that is a DNS name (dot-separated labels of 1-63 ASCII letters, digits and hyphens, not
/// starting or ending with a hyphen — so punycode `xn--…` and `a--b` pass — the last label
/// starting with a letter, an optional final dot) or an IPv4 address, an optional port, then
/// path, query and fragment. Internationalized names go in their punycode form; IPv6 hosts
/// are not taken. WHATWG URL parsing takes far more (`https://ab.org*`, `HTTPS://…`, user info);
/// this is the exact rule the OpenAPI pattern states, so a client can check it beforehand.
#[derive(Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
#[schema(
    format = "uri",
    max_length = 2048,
    pattern = "^https?://(((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])|([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.?)(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?([/?#][^\\s\\x00-\\x1f\\x7f-\\x9f]*)?$",
    example = "https://yourapp.com/billing/success"
)]
pub struct RedirectUrl(String);

pub const REDIRECT_URL_MAX: usize = 2048;

impl RedirectUrl {
    pub fn parse(field: &str, raw: &str, stage: Stage) -> Result<Self, InputError> {
        let bad = |why: &str| Err(InputError::invalid(field, format!("`{field}` {why}")));
        if raw.chars().count() > REDIRECT_URL_MAX {
            return bad("is longer than 2048 characters");
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("must be an absolute http(s) URL without spaces");
        }
        let rest = if let Some(rest) = raw.strip_prefix("https://") {
            rest
        } else if let Some(rest) = raw.strip_prefix("http://") {
            if stage != Stage::Test {
                return bad("must be an https:// URL in live mode");
            }
            rest
        } else {
            return bad("must be an absolute URL starting with https:// (or http://)");
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if !(is_dns_name(host) || is_ipv4(host)) {
            return bad(
                "must have a host that is a DNS name (letters, digits, hyphens; the last label starting with a letter) or an IPv4 address, and no user or password",
            );
        }
        if port.is_some_and(|p| !is_port(p)) {
            return bad("has a port that is not 0-65535");
        }
        // The rule above is narrower than WHATWG's: what passes it, the url crate parses.
        if url::Url::parse(raw).is_err() {
            return bad("must be an absolute http(s) URL");
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Dot-separated labels of 1-63 ASCII letters, digits and hyphens, not starting or ending
/// with a hyphen (RFC 1123); the last label starts with a letter (so it is never read as an
/// IP address); one final dot (the root) is allowed.
fn is_dns_name(host: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let mut labels = host.split('.').rev();
    let last_ok = labels
        .next()
        .is_some_and(|last| label_ok(last) && last.starts_with(|c: char| c.is_ascii_alphabetic()));
    last_ok && labels.all(label_ok)
}

/// A dotted quad without leading zeros (Rust's parser refuses them).
fn is_ipv4(host: &str) -> bool {
    host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// 0-65535 in 1-4 digits, or in 5 without a leading zero.
fn is_port(port: &str) -> bool {
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    digits
        && (port.len() <= 4
            || (port.len() == 5
                && !port.starts_with('0')
                && port.parse::<u32>().is_ok_and(|p| p <= 65_535)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    /// How the API renders an input error.
    fn api<T: std::fmt::Debug>(result: Result<T, InputError>) -> ApiError {
        ApiError::from(result.unwrap_err())
    }

    #[test]
    fn only_paid_tiers_parse() {
        assert_eq!(paid_tier("pro"), Ok(Tier::Pro));
        assert_eq!(paid_tier("enterprise"), Ok(Tier::Enterprise));
        for bad in ["free", "premium", "Pro", ""] {
            assert_eq!(api(paid_tier(bad)).code(), "invalid_tier", "{bad}");
        }
        assert_eq!(
            api(paid_tier("premium")).body()["error"]["message"],
            "Invalid tier 'premium'. Valid tiers: pro, enterprise"
        );
    }

    #[test]
    fn external_user_ids_are_what_identity_providers_issue() {
        let longest = "é".repeat(255);
        for good in [
            "user_123",
            "a.b-c:d@e+f",
            "auth0|5f7c8ec7c33c6c004bbafe82",
            "google-oauth2|104398276354",
            "a b",
            "a/b#c%d~e",
            "ユーザー",
            longest.as_str(),
        ] {
            assert!(
                ExternalUserId::parse("external_user_id", good).is_ok(),
                "{good}"
            );
        }
        let too_long = "x".repeat(256);
        for bad in [
            "",
            "a\nb",
            "\u{0}",
            "tab\there",
            "\u{85}",
            too_long.as_str(),
        ] {
            let e = api(ExternalUserId::parse("external_user_id", bad));
            assert_eq!(e.code(), "invalid_request", "{bad:?}");
        }
    }

    fn key_of(raw: &str) -> String {
        Subject::User(ExternalUserId::parse("external_user_id", raw).unwrap()).key()
    }

    #[test]
    fn key_forms_keep_old_ids_and_never_collide_or_carry_a_separator() {
        assert_eq!(key_of("u1"), "user#u1");
        assert_eq!(key_of("a.b-c:d@e+f"), "user#a.b-c:d@e+f");
        assert_eq!(key_of("auth0|abc"), "user#auth0%7Cabc");
        // The literal spelling of another id's key form is another key.
        assert_eq!(key_of("auth0%7Cabc"), "user#auth0%257Cabc");
        assert_eq!(key_of("a#self"), "user#a%23self");
        let hashed = key_of(&"é".repeat(255));
        assert!(
            hashed.starts_with("user#~") && hashed.len() == 5 + 65,
            "{hashed}"
        );
        assert_ne!(hashed, key_of(&"é".repeat(254)));
        let ids = [
            "a", "a#", "a%23", "a|b", "a%7Cb", "~", "%7E", " ", "+", "%2B",
        ];
        let keys: std::collections::HashSet<String> = ids.iter().map(|i| key_of(i)).collect();
        assert_eq!(keys.len(), ids.len(), "{keys:?}");
        for key in &keys {
            assert!(Subject::is_key(key), "{key}");
            assert!(!key["user#".len()..].contains(['#', '|']), "{key}");
        }
    }

    #[test]
    fn subject_keys_are_recognised() {
        assert!(Subject::is_key("self"));
        assert!(Subject::is_key("user#u1"));
        assert!(!Subject::is_key("user#"));
        assert!(!Subject::is_key("user#a b"));
        assert!(!Subject::is_key("other"));
    }

    #[test]
    fn analysis_ids_are_deduplicated_and_bounded() {
        let ids =
            AnalysisIds::parse("analysis_ids", vec!["a".into(), "b".into(), "a".into()]).unwrap();
        assert_eq!(ids.as_slice(), ["a", "b"]);
        let fifty: Vec<String> = (0..50).map(|i| format!("ana_{i}")).collect();
        assert_eq!(
            AnalysisIds::parse("analysis_ids", fifty.clone())
                .unwrap()
                .as_slice()
                .len(),
            50
        );
        let mut fifty_one = fifty;
        fifty_one.push("ana_50".into());
        let e = api(AnalysisIds::parse("analysis_ids", fifty_one));
        assert!(
            e.body()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("At most 50")
        );
        assert!(AnalysisIds::parse("analysis_ids", vec![]).is_err());
        assert!(AnalysisIds::parse("analysis_ids", vec!["a b".into()]).is_err());
    }

    #[test]
    fn emails_are_of_the_kind_stripe_takes() {
        for good in [
            "user@example.com",
            "first.last+tag@mail.example.co.uk",
            "o'brien@xn--bcher-kva.de",
            "a@b-c.io",
        ] {
            assert!(customer_email("customer_email", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "user",
            "@example.com",
            "user@example",
            "a b@example.com",
            "user@example..com",
            ".user@example.com",
            "us..er@example.com",
            "user@-example.com",
            "user@example.c0m",
            "ü@example.com",
            "user@exämple.com",
        ] {
            assert!(customer_email("customer_email", bad).is_err(), "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(243));
        assert!(customer_email("customer_email", &long).is_err());
    }

    #[test]
    fn redirect_urls_are_absolute_and_https_when_live() {
        assert!(
            RedirectUrl::parse("success_url", "https://app.example.com/ok?x=1", Stage::Live)
                .is_ok()
        );
        assert!(RedirectUrl::parse("success_url", "http://localhost:3000/ok", Stage::Test).is_ok());
        assert!(
            RedirectUrl::parse("success_url", "http://app.example.com/ok", Stage::Live).is_err()
        );
        for bad in [
            "/relative",
            "ftp://x",
            "https://",
            "https:// x",
            "javascript:alert(1)",
            "https://ab.org*",
            "HTTPS://ab.org",
            "https://user:pw@ab.org/",
            "https://a.1/",
            "https://-a.com/",
            "https://a-.com/",
            "https://a.com../",
            "https://01.2.3.4/",
            "https://1.2.3.4.5/",
            "https://a.com:/x",
            "https://a.com:65536/",
            "https://a.com:01234/",
            "https://[::1]/",
        ] {
            let e = api(RedirectUrl::parse("cancel_url", bad, Stage::Test));
            assert_eq!(e.body()["error"]["field"], "cancel_url", "{bad}");
        }
        let too_long_label = format!("https://{}.com/", "a".repeat(64));
        assert!(RedirectUrl::parse("cancel_url", &too_long_label, Stage::Test).is_err());
        let long_label = format!("https://{}.com/", "a".repeat(63));
        for good in [
            "https://xn--mnchen-3ya.de/ok",
            "https://deploy-preview-42--mysite.netlify.app/ok",
            "https://a.com./",
            "https://a.b-c.example:65535/p?q=1#f",
            "http://127.0.0.1:3000/ok",
            "https://xn.example/é?x={CHECKOUT_SESSION_ID}",
            "https://a.com:0080",
            long_label.as_str(),
        ] {
            assert!(
                RedirectUrl::parse("success_url", good, Stage::Test).is_ok(),
                "{good}"
            );
        }
    }
}
