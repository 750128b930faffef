#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run(subscriptions::router, shared::state::Sells::Catalog).await
}
