//! The walls of `docs/architecture.md`, checked on the source tree so they stay up:
//! - the pure phases (`canonicalize`, `route`, `authorize`, `authenticate/tokens`) import none
//!   of the server, forwarding, endpoint or store modules;
//! - no import loop between the top-level modules of `src/`;
//! - the gateway's endpoints reach sessions through `authenticate::sessions`, never by
//!   calling the store themselves.
//!
//! Imports are read from the text (`crate::module` paths, `use crate::{a, b}` groups); unit
//! test code (`#[cfg(test)]` onwards, `tests.rs` files) is left out, as it may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules a pure phase must never import.
const NOT_FROM_PURE: [&str; 10] = [
    "accept",
    "forward",
    "endpoints",
    "store",
    "gateway",
    "runtime",
    "decision",
    "admin",
    "reload",
    "oidc",
];
const PURE: [&str; 4] = ["canonicalize", "route", "authorize", "authenticate/tokens"];

/// Every `.rs` file under `src/` (path relative to `src/`, text).
fn read_tree(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_tree(&path, base, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// The top-level module a file belongs to (`authenticate/tokens/tests.rs` → `authenticate`).
fn top(file: &str) -> String {
    file.split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_string()
}

/// The crate modules a file's (non-test) code names.
fn imports(text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if known.contains(&name) {
                    out.insert(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if known.contains(&name) {
            out.insert(name);
        }
    }
    out
}

/// Every wall broken in `files`, in words.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let files: Vec<&(String, String)> = files
        .iter()
        .filter(|(f, _)| !f.ends_with("/tests.rs") && f != "lib.rs" && f != "main.rs")
        .collect();
    let known: BTreeSet<String> = files.iter().map(|(f, _)| top(f)).collect();
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in &files {
        let me = top(file);
        let used = imports(text, &known);
        let pure = PURE
            .iter()
            .any(|p| file.trim_end_matches(".rs") == *p || file.starts_with(&format!("{p}/")));
        if pure {
            for bad in used.iter().filter(|u| NOT_FROM_PURE.contains(&u.as_str())) {
                problems.push(format!("pure phase `{file}` imports `{bad}`"));
            }
        }
        graph
            .entry(me.clone())
            .or_default()
            .extend(used.into_iter().filter(|u| *u != me));
    }
    // Endpoints call no store method (`store.revoke_session(...)`, `.store\n.session(...)`).
    for (file, text) in &files {
        if !file.starts_with("endpoints/") {
            continue;
        }
        let code = text.split("#[cfg(test)]").next().unwrap_or(text);
        let squeezed: String = code.split_whitespace().collect();
        let mut rest = squeezed.as_str();
        while let Some(i) = rest.find("store.") {
            let after = &rest[i + "store.".len()..];
            let method: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if after[method.len()..].starts_with('(') || after[method.len()..].starts_with("::<") {
                problems.push(format!(
                    "`{file}` calls the store directly (`store.{method}`)"
                ));
            }
            rest = after;
        }
    }
    // Import loops: a module that reaches itself.
    let mut reported = BTreeSet::new();
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    cycle.push(start.clone());
                    let mut key: Vec<String> = path.clone();
                    key.sort();
                    if reported.insert(key) {
                        problems.push(format!("import loop: {}", cycle.join(" -> ")));
                    }
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    problems
}

fn tree() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_tree(&src, &src, &mut files);
    files
}

#[test]
fn the_source_tree_keeps_its_walls() {
    let problems = violations(&tree());
    assert!(
        problems.is_empty(),
        "walls broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_deliberate_violation_is_caught() {
    // A pure phase reaching for the store.
    let mut files = tree();
    let route = files.iter_mut().find(|(f, _)| f == "route.rs").unwrap();
    route.1 = format!("use crate::store::Store;\n{}", route.1);
    let problems = violations(&files);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("pure phase `route.rs` imports `store`")),
        "{problems:?}"
    );
    // An endpoint revoking through the store instead of the sessions module.
    let mut files = tree();
    let logout = files
        .iter_mut()
        .find(|(f, _)| f == "endpoints/logout.rs")
        .unwrap();
    // At the top: what follows `#[cfg(test)]` (the file's unit tests) is not checked.
    logout.1 = format!(
        "fn sneak(gw: &Gateway) {{ let _ = gw\n    .store\n    .revoke_user(\"a\", 0, 0); }}\n{}",
        logout.1
    );
    let problems = violations(&files);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("endpoints/logout.rs` calls the store directly")),
        "{problems:?}"
    );
    // A loop: the store importing the request sequence that imports it.
    let mut files = tree();
    let store = files.iter_mut().find(|(f, _)| f == "store/mod.rs").unwrap();
    store.1 = format!("use crate::gateway::handle;\n{}", store.1);
    let problems = violations(&files);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("import loop") && p.contains("store")),
        "{problems:?}"
    );
    // A loop through a grouped import.
    let mut files = tree();
    let clock = files.iter_mut().find(|(f, _)| f == "clock.rs").unwrap();
    clock.1 = format!("use crate::{{ids, config}};\n{}", clock.1);
    let problems = violations(&files);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("import loop") && p.contains("clock")),
        "{problems:?}"
    );
}
