//! The Stripe client's behaviour where the emulator cannot go: a connection that dies before
//! answering, and an error status without Stripe's error object. Raw sockets play Stripe.

use shared::stripe::checkout::Owner;
use shared::stripe::{StripeApi, StripeFailure};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves connections in order: `answers[i]` is written to the i-th connection after its
/// request is read (`None`: the connection is closed without an answer). Returns the base URL
/// and the count of connections accepted.
async fn fake_stripe(answers: Vec<Option<String>>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        for answer in answers {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 16 * 1024];
            let _ = socket.read(&mut buf).await;
            if let Some(answer) = answer {
                let _ = socket.write_all(answer.as_bytes()).await;
            }
            let _ = socket.shutdown().await;
        }
    });
    (base, accepted)
}

fn http(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn owner() -> Owner {
    Owner {
        account_id: "acct_1".into(),
        subject: "self".into(),
    }
}

#[tokio::test]
async fn a_connection_that_dies_unanswered_is_sent_once_more() {
    let (base, accepted) = fake_stripe(vec![
        None,
        Some(http(
            "200 OK",
            "application/json",
            r#"{"id":"cus_1","object":"customer"}"#,
        )),
    ])
    .await;
    let stripe = StripeApi::new(&base, "sk_test_x").expect("client");
    let id = stripe
        .create_customer(&owner(), "key-1")
        .await
        .expect("the second attempt answers");
    assert_eq!(id, "cus_1");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn two_unanswered_attempts_are_upstream_unavailable() {
    let (base, accepted) = fake_stripe(vec![None, None, None]).await;
    let stripe = StripeApi::new(&base, "sk_test_x").expect("client");
    let err = stripe.create_customer(&owner(), "key-1").await.unwrap_err();
    assert!(matches!(err, StripeFailure::Unavailable(_)), "{err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_error_status_without_stripes_error_object_is_unavailable_not_not_found() {
    let (base, _) = fake_stripe(vec![Some(http(
        "404 Not Found",
        "text/html",
        "<h1>nope</h1>",
    ))])
    .await;
    let stripe = StripeApi::new(&base, "sk_test_x").expect("client");
    let err = stripe.subscription("sub_1").await.unwrap_err();
    assert!(matches!(err, StripeFailure::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn stripes_own_errors_keep_their_meaning() {
    let card = r#"{"error":{"type":"card_error","code":"card_declined","message":"Your card was declined."}}"#;
    let missing =
        r#"{"error":{"type":"invalid_request_error","message":"No such subscription: 'sub_1'"}}"#;
    let (base, _) = fake_stripe(vec![
        Some(http("402 Payment Required", "application/json", card)),
        Some(http("404 Not Found", "application/json", missing)),
    ])
    .await;
    let stripe = StripeApi::new(&base, "sk_test_x").expect("client");
    let err = stripe.create_customer(&owner(), "key-1").await.unwrap_err();
    assert_eq!(err, StripeFailure::Card("Your card was declined.".into()));
    let err = stripe.subscription("sub_1").await.unwrap_err();
    assert!(matches!(err, StripeFailure::NotFound(_)), "{err:?}");
}
