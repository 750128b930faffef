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
