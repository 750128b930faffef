//! The local stack's development account and its API key, kept in `.local/api-key` and
//! reused on later starts while the database still knows it.

use anyhow::Context;
use shared::clock::Clock;
use shared::config::Stage;
use shared::keys::{self, AccountId, ApiKey};
use shared::store::Store;
use std::path::Path;

pub const DEV_ACCOUNT: &str = "local-dev";
pub const KEY_FILE: &str = "api-key";

/// The development key: the one in `dir/api-key` if it is still valid, else a new one.
pub async fn ensure(store: &Store, clock: &dyn Clock, dir: &Path) -> anyhow::Result<ApiKey> {
    let path = dir.join(KEY_FILE);
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(key) = ApiKey::parse(text.trim())
        && key.mode() == Stage::Test
        && store
            .api_key(&key.hash())
            .await?
            .is_some_and(|k| k.revoked_at.is_none())
    {
        return Ok(key);
    }
    let account = AccountId::parse(DEV_ACCOUNT).map_err(anyhow::Error::msg)?;
    // An internal key: its own limit, far above any plan's (README: rate limits).
    let (key, _) = keys::issue(
        store,
        clock,
        &account,
        Stage::Test,
        Some(shared::catalog::INTERNAL_RATE_LIMIT),
    )
    .await?;
    std::fs::write(&path, format!("{}\n", key.expose()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}
