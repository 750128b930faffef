#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run(webhook::router, shared::state::StripeUse::Calls).await
}
