//! The node's layering, checked on its sources: no import cycle between the top-level
//! modules of `node/src` (a service never reaches up into one that depends on it), and the
//! HTTP layer is the only one that sees every service.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level names a `use crate::{…}` group or a `crate::name` path refers to.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: the first segment of each item at depth 0.
            let (mut depth, mut skipping) = (0usize, false);
            let mut name = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        refs.insert(std::mem::take(&mut name));
                        skipping = false;
                    }
                    ':' if depth == 0 => skipping = true,
                    c if depth == 0 && !skipping && (c.is_alphanumeric() || c == '_') => {
                        name.push(c)
                    }
                    _ => {}
                }
            }
            refs.insert(name);
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            refs.insert(name);
        }
    }
    refs.retain(|n| !n.is_empty());
    refs
}

/// Module → the other top-level modules it imports (test code left out).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path);
        }
        modules.insert(name, files);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(name, files)| {
            let mut deps = BTreeSet::new();
            for f in files {
                let text = std::fs::read_to_string(f).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                deps.extend(
                    crate_refs(code)
                        .into_iter()
                        .filter(|d| d != name && names.contains(d)),
                );
            }
            (name.clone(), deps)
        })
        .collect()
}

/// A cycle through `start`, if any, as the path of modules.
fn cycle_from(
    g: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    at: &str,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in &g[at] {
        if next == start {
            let mut c = path.clone();
            c.push(start.to_owned());
            return Some(c);
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if let Some(c) = cycle_from(g, start, next, path, seen) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn reference_parser_sees_groups_and_paths() {
    let refs = crate_refs(
        "use crate::{\n    config::{A, B},\n    now_ms,\n    store::Op,\n};\nlet x = crate::peers::Via::Ip;",
    );
    let want: BTreeSet<String> = ["config", "now_ms", "store", "peers"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(refs, want);
}

#[test]
fn top_level_modules_form_no_import_cycle() {
    let g = graph();
    assert!(g.contains_key("market") && g.contains_key("http"), "{g:?}");
    for start in g.keys() {
        let mut path = vec![start.clone()];
        let mut seen = BTreeSet::new();
        if let Some(c) = cycle_from(&g, start, start, &mut path, &mut seen) {
            panic!("import cycle: {}\nfull graph: {g:#?}", c.join(" → "));
        }
    }
}

#[test]
fn no_service_imports_the_http_layer() {
    for (module, deps) in graph() {
        assert!(
            module == "http" || !deps.contains("http"),
            "{module} imports the HTTP layer"
        );
    }
}
