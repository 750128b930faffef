#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run(credits::router, shared::state::StripeUse::Sells).await
}
