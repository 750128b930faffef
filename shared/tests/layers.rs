//! The dependency direction inside `shared`, read from its sources: domain types (no I/O) at
//! the bottom, adapters (DynamoDB, Stripe, AWS) above them, HTTP plumbing (errors' rendering,
//! auth, idempotency, state) on top. A module imports only from its own layer or below, and
//! no import cycle is larger than a module and its own child.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of `shared`, by layer (0: domain, 1: adapters, 2: HTTP plumbing).
const LAYERS: [(&str, u8); 40] = [
    ("catalog", 0),
    ("clock", 0),
    ("config", 0),
    ("tables", 0),
    ("domain", 0),
    ("subscriptions", 0),
    ("ledger", 0),
    ("ledger::rules", 0),
    ("metering", 0),
    ("metering::rules", 0),
    ("metrics", 0),
    // The limiter's pure rules and its per-instance memory (caches, no I/O).
    ("ratelimit", 0),
    ("store", 1),
    ("keys", 1),
    ("ledger::store", 1),
    ("metering::store", 1),
    ("ratelimit::store", 1),
    ("stripe", 1),
    ("stripe::client", 1),
    ("stripe::checkout", 1),
    ("stripe::webhook", 1),
    ("stripe::prices", 1),
    ("secrets", 1),
    ("aws", 1),
    ("telemetry", 1),
    ("tls", 0),
    ("error", 2),
    ("auth", 2),
    ("http", 2),
    ("http::idempotency", 2),
    ("http::ratelimit", 2),
    ("openapi", 2),
    ("query", 2),
    ("state", 2),
    ("sync", 2),
    ("events", 2),
    ("reconcile", 2),
    ("customers", 2),
    ("lambda", 2),
    ("lib", 2),
];

/// What the crate root re-exports, by the module it comes from.
const REEXPORTS: [(&str, &str); 3] = [
    ("ApiError", "error"),
    ("AppState", "state"),
    ("idempotency", "http::idempotency"),
];

/// The module a source file is (`ledger/store.rs` → `ledger::store`, `http/mod.rs` → `http`).
fn module_of(relative: &Path) -> String {
    let s = relative
        .with_extension("")
        .to_string_lossy()
        .replace('\\', "/");
    s.strip_suffix("/mod").unwrap_or(&s).replace('/', "::")
}

/// The source without comments and without its unit tests (`#[cfg(test)] mod tests`).
fn code_of(source: &str) -> String {
    let source = source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    source
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The paths named after `crate::` (a group `crate::{a::b, c}` gives each member).
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut member = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        paths.push(std::mem::take(&mut member));
                        continue;
                    }
                    _ => {}
                }
                member.push(c);
            }
            paths.push(member);
        } else {
            let first = ident(rest);
            let second = rest[first.len()..]
                .strip_prefix("::")
                .map(ident)
                .unwrap_or_default();
            paths.push(format!("{first}::{second}"));
        }
    }
    paths
        .into_iter()
        .map(|p| p.split_whitespace().collect::<String>())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The module a path names: the longest known module prefix, or a root re-export.
fn target(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").map(ident).collect();
    for n in (1..=parts.len().min(2)).rev() {
        let candidate = parts[..n].join("::");
        if modules.contains(&candidate) {
            return Some(candidate);
        }
    }
    REEXPORTS
        .iter()
        .find(|(name, _)| *name == parts[0])
        .map(|(_, module)| module.to_string())
}

fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(f.strip_prefix(&root).expect("under src")))
        .collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(file.strip_prefix(&root).expect("under src"));
        let code = code_of(&std::fs::read_to_string(file).expect("a source file"));
        let targets: BTreeSet<String> = crate_paths(&code)
            .iter()
            .filter_map(|p| target(p, &modules))
            .filter(|t| *t != module)
            .collect();
        graph.insert(module, targets);
    }
    graph
}

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| panic!("module `{module}` has no layer in LAYERS: give it one"))
}

/// Whether one of `a`, `b` is the other's parent module.
fn parent_and_child(a: &str, b: &str) -> bool {
    let child_of = |c: &str, p: &str| c.rsplit_once("::").is_some_and(|(parent, _)| parent == p);
    child_of(a, b) || child_of(b, a)
}

#[test]
fn every_module_imports_only_from_its_layer_or_below() {
    let graph = imports();
    let mut wrong = Vec::new();
    for (module, targets) in &graph {
        for t in targets {
            if layer(t) > layer(module) {
                wrong.push(format!(
                    "{module} (layer {}) imports {t} (layer {})",
                    layer(module),
                    layer(t)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers:\n{wrong:#?}");
}

#[test]
fn no_import_cycle_is_larger_than_a_module_and_its_child() {
    let graph = imports();
    // Reachability by search from each module; a cycle joins modules that reach each other.
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = graph[from].iter().cloned().collect();
        while let Some(m) = todo.pop() {
            if seen.insert(m.clone())
                && let Some(next) = graph.get(&m)
            {
                todo.extend(next.iter().cloned());
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut cycles = BTreeSet::new();
    for (m, r) in &reaches {
        let cycle: BTreeSet<&String> = r
            .iter()
            .filter(|o| reaches.get(o).is_some_and(|back| back.contains(*m)))
            .collect();
        let allowed = cycle.is_empty()
            || cycle.iter().all(|o| *o == *m || parent_and_child(o, m)) && cycle.len() <= 2;
        if !allowed {
            cycles.insert(format!("{cycle:?}"));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{cycles:#?}");
}

#[test]
fn the_reader_finds_imports_of_every_form() {
    let code = code_of(
        "use crate::a::B;\nuse crate::{c::D, e::{F, G}, h};\n// crate::comment\nfn f() { crate::i::j(); }\n",
    );
    let modules: BTreeSet<String> = ["a", "c", "e", "h", "i", "x::y"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let found: BTreeSet<String> = crate_paths(&code)
        .iter()
        .filter_map(|p| target(p, &modules))
        .collect();
    let expected: BTreeSet<String> = ["a", "c", "e", "h", "i"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, expected);
    assert_eq!(target("x::y::Z", &modules).as_deref(), Some("x::y"));
    assert_eq!(target("ApiError", &modules).as_deref(), Some("error"));
}
