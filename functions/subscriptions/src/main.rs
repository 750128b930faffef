#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run(subscriptions::router, shared::state::StripeUse::Sells).await
}
