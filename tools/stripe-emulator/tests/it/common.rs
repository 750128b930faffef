//! Starting an emulator on a random port, raw HTTP helpers and a webhook receiver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use stripe_emulator::{EmulatorHandle, EmulatorOptions};

pub const KEY: &str = "sk_test_emulator";

pub struct Emu {
    pub handle: EmulatorHandle,
    pub http: reqwest::Client,
    pub client: stripe::Client,
    /// The seeded catalog's price ids (the emulator chooses them, as Stripe does).
    pub pro: String,
    pub enterprise: String,
    pub medium: String,
    pub report: String,
}

/// The id of the price holding `lookup_key`, or "" in an unseeded emulator.
async fn price_of(client: &stripe::Client, lookup_key: &str) -> String {
    stripe_product::price::ListPrice::new()
        .lookup_keys(vec![lookup_key.to_string()])
        .send(client)
        .await
        .expect("listing prices")
        .data
        .first()
        .map(|p| p.id.to_string())
        .unwrap_or_default()
}

pub async fn emu() -> Emu {
    emu_with(EmulatorOptions::default()).await
}

pub async fn emu_with(options: EmulatorOptions) -> Emu {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = stripe_emulator::start(listener, options)
        .await
        .expect("start");
    let client = stripe::ClientBuilder::new(KEY)
        .url(handle.base_url())
        .build()
        .expect("client");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest");
    Emu {
        pro: price_of(&client, "billing_pro_monthly").await,
        enterprise: price_of(&client, "billing_enterprise_monthly").await,
        medium: price_of(&client, "billing_credits_medium").await,
        report: price_of(&client, "billing_report_single").await,
        handle,
        http,
        client,
    }
}

pub fn encode(params: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Emu {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url())
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(&str, &str)],
        idem: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(KEY);
        if method == reqwest::Method::GET {
            req = self
                .http
                .get(format!("{}?{}", self.url(path), encode(params)))
                .bearer_auth(KEY);
        } else {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(encode(params));
        }
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.expect("json body");
        (status, body)
    }

    pub async fn post(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let (status, body) = self.send(reqwest::Method::POST, path, params, None).await;
        assert_eq!(status, 200, "POST {path}: {body}");
        body
    }

    pub async fn get(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, params, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// A customer whose default payment method is the given test card id.
    pub async fn customer_with_card(&self, pm: &str) -> String {
        let c = self
            .post(
                "/v1/customers",
                &[
                    ("email", "jo@example.com"),
                    ("payment_method", pm),
                    ("invoice_settings[default_payment_method]", pm),
                ],
            )
            .await;
        c["id"].as_str().unwrap().to_owned()
    }

    pub async fn subscribe(&self, customer: &str, price: &str) -> Value {
        self.post(
            "/v1/subscriptions",
            &[
                ("customer", customer),
                ("items[0][price]", price),
                ("metadata[tenant]", "t1"),
            ],
        )
        .await
    }

    pub async fn advance(&self, seconds: i64) -> Value {
        let resp = self
            .http
            .post(self.url("/_emulator/clock/advance"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("seconds={seconds}"))
            .send()
            .await
            .expect("advance");
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("json")
    }

    /// `method /_emulator/faults` with form parameters: the status and the JSON answer.
    pub async fn faults(&self, method: reqwest::Method, params: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .request(method, self.url("/_emulator/faults"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(params))
            .send()
            .await
            .expect("faults");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    pub async fn events(&self, kind: &str) -> Vec<Value> {
        let list = self
            .get("/v1/events", &[("type", kind), ("limit", "100")])
            .await;
        list["data"].as_array().cloned().unwrap_or_default()
    }
}

/// A webhook receiver answering 500 to its first `fail_first` requests.
#[derive(Clone)]
pub struct Receiver {
    pub received: Arc<Mutex<Vec<(String, String)>>>,
    pub calls: Arc<Mutex<u32>>,
    pub fail_first: u32,
    pub url: String,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = {
        let mut c = r.calls.lock().unwrap();
        *c += 1;
        *c
    };
    if n <= r.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    r.received
        .lock()
        .unwrap()
        .push((sig, String::from_utf8_lossy(&body).into_owned()));
    StatusCode::OK
}

pub async fn receiver(fail_first: u32) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
    let r = Receiver {
        received: Arc::default(),
        calls: Arc::default(),
        fail_first,
        url,
    };
    let app = axum::Router::new()
        .route("/webhooks", axum::routing::post(receive))
        .with_state(r.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    r
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
pub async fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
