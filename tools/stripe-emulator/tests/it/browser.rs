//! Headless Chromium (through chromedriver's WebDriver protocol) paying on the Checkout page.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_binary(names: &[&str]) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    for name in names {
        for dir in path.split(':').chain(["/usr/bin", "/usr/lib/chromium"]) {
            let candidate = std::path::Path::new(dir).join(name);
            if candidate.is_file() {
                return Some(candidate.to_string_lossy().into_owned());
            }
        }
    }
    None
}

impl Driver {
    async fn start() -> Driver {
        let missing = "Chromium and chromedriver are required for the browser test: run `make test` \
                       (it installs them), or `apt-get install -y chromium chromium-driver`.";
        let driver = find_binary(&["chromedriver"]).unwrap_or_else(|| panic!("{missing}"));
        let chromium = find_binary(&["chromium", "chromium-browser", "google-chrome"])
            .unwrap_or_else(|| panic!("{missing}"));
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{missing} ({e})"));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile =
            std::env::temp_dir().join(format!("emu-chromium-{}-{port}", std::process::id()));
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display()),
                    ],
                },
            }},
        });
        let mut d = Driver {
            child,
            base,
            session: String::new(),
            http,
            _profile: TempDir(profile),
        };
        let v = d.call(reqwest::Method::POST, "/session", caps).await;
        d.session = v["sessionId"].as_str().expect("session id").to_owned();
        d
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let mut req = self.http.request(method.clone(), url);
        if method == reqwest::Method::POST {
            req = req.json(&body);
        }
        let v: Value = req
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("webdriver json");
        assert!(
            v["value"]["error"].is_null(),
            "webdriver error on {method} {path}: {}",
            v["value"]["message"]
        );
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("element id")
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            json!({}),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

async fn success_site() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/success",
        axum::routing::get(|| async {
            axum::response::Html("<h1 id=\"thanks\">Thanks for your order</h1>")
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

#[tokio::test]
async fn browser_pays_on_checkout_page() {
    let e = emu().await;
    let site = success_site().await;
    let success = format!("{site}/success?session_id={{CHECKOUT_SESSION_ID}}");
    let create = |email: &'static str| {
        let success = success.clone();
        let e = &e;
        async move {
            e.post(
                "/v1/checkout/sessions",
                &[
                    ("mode", "subscription"),
                    ("line_items[0][price]", e.pro.as_str()),
                    ("line_items[0][quantity]", "1"),
                    ("success_url", &success),
                    ("cancel_url", "http://127.0.0.1:9/cancel"),
                    ("customer_email", email),
                ],
            )
            .await
        }
    };
    let driver = Driver::start().await;

    let s = create("ok@example.com").await;
    let id = s["id"].as_str().unwrap().to_owned();
    driver.goto(s["url"].as_str().unwrap()).await;
    assert!(driver.source().await.contains("$99.00"));
    driver.click("#submit").await;
    let expected = format!("{site}/success?session_id={id}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while driver.current_url().await != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached {expected}: at {}",
            driver.current_url().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(driver.source().await.contains("Thanks for your order"));
    let session = e.get(&format!("/v1/checkout/sessions/{id}"), &[]).await;
    assert_eq!(session["status"], "complete");

    let s = create("declined@example.com").await;
    driver.goto(s["url"].as_str().unwrap()).await;
    driver
        .type_into("#card_number", "4000 0000 0000 0002")
        .await;
    driver.click("#submit").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !driver.source().await.contains("Your card was declined.") {
        assert!(tokio::time::Instant::now() < deadline, "no decline message");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let session = e
        .get(
            &format!("/v1/checkout/sessions/{}", s["id"].as_str().unwrap()),
            &[],
        )
        .await;
    assert_eq!(session["status"], "open");
    let _ = driver.call(reqwest::Method::DELETE, "", Value::Null).await;
}
