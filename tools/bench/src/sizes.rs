//! Bootstrap sizes: each release binary as built (the release profile strips it), next to
//! hello-world, and the arm64 bootstraps of `make build` when they are there.

use crate::{BINARIES, HELLO, targets};
use anyhow::Context;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct SizeRow {
    pub binary: &'static str,
    /// The release build for this machine (x86_64 here), in bytes.
    pub bytes: u64,
    pub mb: f64,
    /// Whether the file has no symbol table (`strip = true` in the release profile).
    pub stripped: Option<bool>,
    pub ratio_to_hello: f64,
    pub within_target: bool,
    /// `.aws-sam/build/<Fn>Function/bootstrap` (arm64, `make build`), when present.
    pub arm64_bytes: Option<u64>,
    pub arm64_within_target: Option<bool>,
}

pub fn measure(bin_dir: &Path, root: &Path) -> anyhow::Result<Vec<SizeRow>> {
    let size = |path: &Path| -> anyhow::Result<(u64, Option<bool>)> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "reading {} (build it first: cargo build --release)",
                path.display()
            )
        })?;
        Ok((bytes.len() as u64, elf_has_symtab(&bytes).map(|s| !s)))
    };
    let (hello_bytes, _) = size(&bin_dir.join(HELLO.name))?;
    let mut rows = Vec::new();
    for binary in BINARIES {
        let (bytes, stripped) = size(&bin_dir.join(binary.name))?;
        let arm64_bytes = binary.sam_id.and_then(|id| {
            std::fs::metadata(root.join(".aws-sam/build").join(id).join("bootstrap"))
                .ok()
                .map(|m| m.len())
        });
        rows.push(SizeRow {
            binary: binary.name,
            bytes,
            mb: bytes as f64 / 1e6,
            stripped,
            ratio_to_hello: bytes as f64 / hello_bytes as f64,
            within_target: bytes <= targets::BOOTSTRAP_MAX_BYTES,
            arm64_bytes,
            arm64_within_target: arm64_bytes.map(|b| b <= targets::BOOTSTRAP_MAX_BYTES),
        });
    }
    Ok(rows)
}

/// Whether a 64-bit little-endian ELF file has a `.symtab` section; `None` for other files.
fn elf_has_symtab(file: &[u8]) -> Option<bool> {
    if file.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(file.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(file.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(file.get(at..at + 8)?.try_into().ok()?));
    let section_headers = usize::try_from(u64_at(0x28)?).ok()?;
    let entry_size = usize::from(u16_at(0x3A)?);
    let count = usize::from(u16_at(0x3C)?);
    let names_index = usize::from(u16_at(0x3E)?);
    let header = |i: usize| section_headers + i * entry_size;
    let names_offset = usize::try_from(u64_at(header(names_index) + 0x18)?).ok()?;
    for i in 0..count {
        let name_at = names_offset + usize::try_from(u32_at(header(i))?).ok()?;
        let name = file.get(name_at..)?.split(|b| *b == 0).next()?;
        if name == b".symtab" {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_an_elf_with_symbols() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        if cfg!(all(target_os = "linux", target_pointer_width = "64")) {
            assert_eq!(elf_has_symtab(&exe), Some(true));
        }
        assert_eq!(elf_has_symtab(b"#!/bin/sh\n"), None);
    }
}
