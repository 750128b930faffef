//! `make openapi`: writes the OpenAPI document to `openapi.json` at the repository root.

fn main() -> std::io::Result<()> {
    let path = std::path::Path::new(openapi::FILE);
    std::fs::write(path, openapi::to_json(&openapi::document()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
