//! The Stripe keys read from a real Secrets Manager protocol server (ministack, installed into
//! .venv by `make test`), one fresh instance per test.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::primitives::Blob;
use devkit::ministack::{self, Ministack};
use shared::config::Stage;
use shared::secrets::{SecretsError, StripeKeys, load_from};

const TEST_KEY: &str = "sk_test_51HyPoThEtIcAlKeY0123456789";
const LIVE_KEY: &str = "sk_live_51HyPoThEtIcAlKeY0123456789";
const WHSEC: &str = "whsec_HyPoThEtIcAlSiGnInGsEcReT";

async fn ministack() -> (Ministack, Client) {
    let ministack = ministack::start()
        .await
        .unwrap_or_else(|e| panic!("starting ministack: {e:#}"));
    let client = ministack.secretsmanager_client();
    (ministack, client)
}

/// Creates the secret `name` holding `value`; returns its ARN.
async fn put(client: &Client, name: &str, value: &str) -> String {
    let output = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("creating the secret");
    output.arn().expect("the secret's ARN").to_string()
}

fn keys_json(secret_key: &str, webhook_secret: &str) -> String {
    serde_json::json!({
        "stripe_secret_key": secret_key,
        "stripe_webhook_secret": webhook_secret,
        "note": "extra keys are ignored",
    })
    .to_string()
}

/// Neither the message nor the Debug form of `err` quotes a secret value.
fn assert_quotes_no_secret(err: &SecretsError) {
    let shown = format!("{err} {err:?}");
    for secret in [TEST_KEY, LIVE_KEY, WHSEC] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[tokio::test]
async fn reads_the_keys_by_name_and_by_arn() {
    let (_ministack, client) = ministack().await;
    let arn = put(&client, "billing/test/stripe", &keys_json(TEST_KEY, WHSEC)).await;
    let expected = StripeKeys {
        secret_key: TEST_KEY.into(),
        webhook_secret: WHSEC.into(),
    };

    let keys = load_from(&client, "billing/test/stripe", Stage::Test)
        .await
        .expect("loading by name");
    assert_eq!(keys, expected);
    let keys = load_from(&client, &arn, Stage::Test)
        .await
        .expect("loading by ARN");
    assert_eq!(keys, expected);
}

#[tokio::test]
async fn reads_live_keys_on_the_live_stage_and_refuses_them_on_the_test_stage() {
    let (_ministack, client) = ministack().await;
    put(&client, "billing/live/stripe", &keys_json(LIVE_KEY, WHSEC)).await;

    let keys = load_from(&client, "billing/live/stripe", Stage::Live)
        .await
        .expect("live keys on the live stage");
    assert_eq!(keys.secret_key, LIVE_KEY);

    let err = load_from(&client, "billing/live/stripe", Stage::Test)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SecretsError::ModeMismatch {
                key_mode: "live",
                stage: Stage::Test,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("billing/live/stripe"), "{message}");
    assert!(message.contains("stripe_secret_key"), "{message}");
    assert_quotes_no_secret(&err);
}

#[tokio::test]
async fn refuses_a_test_key_on_the_live_stage() {
    let (_ministack, client) = ministack().await;
    put(&client, "billing/stripe", &keys_json(TEST_KEY, WHSEC)).await;
    let err = load_from(&client, "billing/stripe", Stage::Live)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SecretsError::ModeMismatch {
                key_mode: "test",
                stage: Stage::Live,
                ..
            }
        ),
        "{err:?}"
    );
    assert_quotes_no_secret(&err);
}

#[tokio::test]
async fn refuses_a_malformed_webhook_secret() {
    let (_ministack, client) = ministack().await;
    put(&client, "billing/stripe", &keys_json(TEST_KEY, TEST_KEY)).await;
    let err = load_from(&client, "billing/stripe", Stage::Test)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SecretsError::InvalidWebhookSecret { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("stripe_webhook_secret"), "{err}");
    assert_quotes_no_secret(&err);
}

#[tokio::test]
async fn bad_json_is_refused_without_quoting_it() {
    let (_ministack, client) = ministack().await;
    // Truncated JSON, and JSON that is not an object.
    put(
        &client,
        "billing/truncated",
        &format!(r#"{{"stripe_secret_key": "{TEST_KEY}", "stripe_webhook_secret": "{WHSEC}""#),
    )
    .await;
    put(&client, "billing/string", &format!(r#""{TEST_KEY}""#)).await;
    put(&client, "billing/plain", TEST_KEY).await;

    for name in ["billing/truncated", "billing/string", "billing/plain"] {
        let err = load_from(&client, name, Stage::Test).await.unwrap_err();
        assert!(matches!(err, SecretsError::InvalidJson { .. }), "{err:?}");
        assert!(err.to_string().contains(name), "{err}");
        assert_quotes_no_secret(&err);
    }
}

#[tokio::test]
async fn a_missing_key_is_named() {
    let (_ministack, client) = ministack().await;
    put(
        &client,
        "billing/stripe",
        &serde_json::json!({ "stripe_secret_key": TEST_KEY }).to_string(),
    )
    .await;
    let err = load_from(&client, "billing/stripe", Stage::Test)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            SecretsError::MissingKey { secret_id, key: "stripe_webhook_secret" }
                if secret_id == "billing/stripe"
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("stripe_webhook_secret"), "{err}");
    assert_quotes_no_secret(&err);
}

#[tokio::test]
async fn an_unknown_secret_is_not_found() {
    let (_ministack, client) = ministack().await;
    let err = load_from(&client, "billing/nope", Stage::Test)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SecretsError::NotFound { secret_id } if secret_id == "billing/nope"),
        "{err:?}"
    );
    assert!(err.to_string().contains("billing/nope"), "{err}");
}

#[tokio::test]
async fn a_binary_secret_has_no_secret_string() {
    let (_ministack, client) = ministack().await;
    client
        .create_secret()
        .name("billing/binary")
        .secret_binary(Blob::new(keys_json(TEST_KEY, WHSEC).into_bytes()))
        .send()
        .await
        .expect("creating a binary secret");
    let err = load_from(&client, "billing/binary", Stage::Test)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SecretsError::NoSecretString { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("billing/binary"), "{err}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_an_sdk_error() {
    // A ministack that has been stopped: its port no longer answers.
    let (ministack, client) = ministack().await;
    drop(ministack);
    let err = load_from(&client, "billing/stripe", Stage::Test)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SecretsError::Sdk { secret_id, .. } if secret_id == "billing/stripe"),
        "{err:?}"
    );
    assert!(err.to_string().contains("billing/stripe"), "{err}");
}

#[tokio::test]
async fn debug_output_shows_neither_secret() {
    let (_ministack, client) = ministack().await;
    put(&client, "billing/stripe", &keys_json(TEST_KEY, WHSEC)).await;
    let keys = load_from(&client, "billing/stripe", Stage::Test)
        .await
        .expect("loading");
    let shown = format!("{keys:?} {keys:#?}");
    assert!(
        !shown.contains(TEST_KEY) && !shown.contains(WHSEC),
        "{shown}"
    );
    assert!(shown.contains("sk_test_…"), "{shown}");
    assert!(shown.contains("whsec_…"), "{shown}");
}

/// The path a cold start takes: `STRIPE_SECRET_ID` in the configuration, the client built
/// from the Lambda environment (region, the role's keys, the endpoint override).
#[tokio::test]
async fn a_cold_start_reads_the_configured_secret_through_the_lambda_environment() {
    let (ministack, client) = ministack().await;
    put(&client, "billing/test/stripe", &keys_json(TEST_KEY, WHSEC)).await;
    let vars = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            ministack.endpoint.as_str(),
        ),
        ("STRIPE_SECRET_ID", "billing/test/stripe"),
    ];
    let lookup = |k: &str| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    let config = shared::config::Config::from_lookup(lookup).expect("config");
    let aws = shared::aws::AwsEnv::from_lookup(lookup).expect("AWS environment");
    let keys = shared::secrets::load(&config, &aws).await.expect("keys");
    assert_eq!(keys.secret_key, TEST_KEY);
    assert_eq!(keys.webhook_secret, WHSEC);
}

/// The deployed start (`AppState::start`) against this ministack, on the live stage, its
/// Stripe keys in the secret `billing/stripe`.
async fn start(
    ministack: &Ministack,
    uses: shared::state::StripeUse,
) -> Result<shared::AppState, shared::state::StartupError> {
    let endpoint = ministack.endpoint.clone();
    let config = shared::config::Config::from_lookup(|k| match k {
        "STAGE" => Some("live".into()),
        "STRIPE_SECRET_ID" => Some("billing/stripe".into()),
        // Nothing answers here: a function that called Stripe at start could not start.
        "STRIPE_API_BASE" => Some("http://127.0.0.1:9".into()),
        _ => None,
    })
    .expect("a configuration");
    let aws = shared::aws::AwsEnv::from_lookup(|k| match k {
        "AWS_REGION" => Some("us-east-1".into()),
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("test".into()),
        "AWS_ENDPOINT_URL_SECRETS_MANAGER" => Some(endpoint.clone()),
        "AWS_ENDPOINT_URL_DYNAMODB" => Some("http://127.0.0.1:9".into()),
        _ => None,
    })
    .expect("an AWS environment");
    let (state, prices) = shared::AppState::start(uses, config, aws).await?;
    prices.await?;
    Ok(state)
}

#[tokio::test]
async fn metering_starts_without_the_stripe_secret_and_its_stripe_client_refuses_every_call() {
    use shared::state::StripeUse;
    let (ministack, client) = ministack().await;
    // No secret yet: what reads it cannot start; metering, which never speaks to Stripe, can.
    let err = start(&ministack, StripeUse::Calls)
        .await
        .expect_err("no start without the secret");
    assert!(err.to_string().contains("billing/stripe"), "{err}");
    let state = start(&ministack, StripeUse::Never)
        .await
        .expect("metering starts without Stripe's keys");
    assert!(state.stripe_keys.is_none());
    let refused = state
        .stripe
        .subscription("sub_1")
        .await
        .expect_err("a keyless client calls nothing");
    assert!(
        format!("{refused:?}").contains(shared::stripe::NO_KEY),
        "{refused:?}"
    );

    // With the secret, the webhook's kind of start reads it.
    put(&client, "billing/stripe", &keys_json(LIVE_KEY, WHSEC)).await;
    let state = start(&ministack, StripeUse::Calls)
        .await
        .expect("starts with the secret");
    assert_eq!(
        state.stripe_keys.as_deref().map(|k| k.secret_key.as_str()),
        Some(LIVE_KEY)
    );
}
