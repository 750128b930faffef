#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run(billing::router, shared::state::StripeUse::Sells).await
}
