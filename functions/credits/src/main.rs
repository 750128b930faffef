#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run(credits::router, shared::state::Sells::Catalog).await
}
