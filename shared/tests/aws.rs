//! The deployed functions' AWS clients (`shared::aws`) speak to DynamoDB through their own
//! HTTP client (hyper, rustls with compiled-in roots): a real engine answers through it, and a
//! dead endpoint is an I/O dispatch failure the SDK retries, not a panic.

use aws_sdk_dynamodb::error::SdkError;
use shared::aws::AwsEnv;

fn env(dynamodb: String) -> AwsEnv {
    AwsEnv::from_lookup(move |k| match k {
        "AWS_REGION" => Some("us-east-1".to_string()),
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("local".to_string()),
        "AWS_ENDPOINT_URL_DYNAMODB" => Some(dynamodb.clone()),
        _ => None,
    })
    .expect("a complete environment")
}

#[tokio::test]
async fn the_aws_clients_reach_dynamodb_through_their_own_http_client() {
    let engine = devkit::Engine::memory().await.unwrap();
    let client = env(engine.endpoint.clone()).dynamodb();
    let tables = shared::tables::TableNames::defaults();
    shared::tables::bootstrap(&client, &tables).await.unwrap();
    let listed = client.list_tables().send().await.unwrap();
    assert!(
        listed.table_names().len() >= 6,
        "{:?}",
        listed.table_names()
    );

    let dead = env("http://127.0.0.1:9".to_string()).dynamodb();
    let err = dead.list_tables().send().await.unwrap_err();
    assert!(
        matches!(&err, SdkError::DispatchFailure(d) if d.is_io()),
        "{err:?}"
    );
}

/// A relay in front of the engine that counts the connections made through it.
async fn counting_relay(engine: &str) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let target = engine.trim_start_matches("http://").to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = opened.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (url, opened)
}

#[tokio::test]
async fn a_cold_start_opens_the_connections_its_first_calls_use() {
    use std::sync::atomic::Ordering;
    let engine = devkit::Engine::memory().await.unwrap();
    let (relay, opened) = counting_relay(&engine.endpoint).await;
    let aws = env(relay);
    aws.warm_dynamodb(2).await;
    assert_eq!(opened.load(Ordering::SeqCst), 2, "the warm-up opened two");

    // Two calls at once, then one more: all on the connections already open.
    let client = aws.dynamodb();
    let (a, b) = tokio::join!(client.list_tables().send(), client.list_tables().send());
    a.unwrap();
    b.unwrap();
    client.list_tables().send().await.unwrap();
    assert_eq!(
        opened.load(Ordering::SeqCst),
        2,
        "the calls opened connections of their own"
    );
}
