//! Config errors (SPEC §3): each names the file, line, column, key path and what was
//! expected. Loading collects every error it can before giving up.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the problem has no single place (e.g. a missing file).
    pub line: u64,
    pub column: u64,
    /// e.g. `routes[0].upstream`.
    pub key: String,
    /// One line: what is wrong and what was expected.
    pub message: String,
    /// The lines around the place, marked (parse errors), for the full report.
    pub snippet: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.key.is_empty()) {
            (0, true) => write!(f, "{}: {}", self.file, self.message),
            (0, false) => write!(f, "{}: {}: {}", self.file, self.key, self.message),
            (_, true) => write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            ),
            (_, false) => write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.column, self.key, self.message
            ),
        }
    }
}

/// Every error found in one load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the configuration is invalid ({n} error{})",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
            if let Some(snippet) = &e.snippet {
                for line in snippet.lines() {
                    write!(f, "\n    {line}")?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The key path of the key on `line` (1-based) of a block-style YAML document, e.g.
/// `routes[1].rules[0].allow_roles`. Used to name the key of an error the parser located.
pub fn key_path_at(text: &str, line: u64) -> String {
    let mut out = String::new();
    walk_keys(text, |n, _, path| {
        if n <= line {
            out = path.to_string();
        }
        n < line
    });
    out
}

/// Where a key is written: line and column (1-based) of `key` (a path as [`key_path_at`]
/// names it; a list item is found at its first line), or of its nearest parent that is
/// written when the key itself is not (a required key left out points at its section). `None` when not even the top-level key is there.
pub fn place_of_key(text: &str, key: &str) -> Option<(u64, u64)> {
    let mut wanted = key;
    loop {
        let mut found = None;
        walk_keys(text, |n, column, path| {
            let inside = path.strip_prefix(wanted).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
            });
            if inside {
                found = Some((n, column));
            }
            found.is_none()
        });
        if found.is_some() {
            return found;
        }
        let cut = wanted.rfind(['.', '['])?;
        wanted = &wanted[..cut];
    }
}

/// Calls `f(line, column, path)` for every line (1-based) that is not blank or a comment,
/// with the column where its content starts and the path of the innermost key open there,
/// while `f` returns `true`.
fn walk_keys(text: &str, mut f: impl FnMut(u64, u64, &str) -> bool) {
    #[derive(Debug)]
    enum Seg {
        Key(String),
        Item(usize),
    }
    struct Entry {
        indent: usize,
        seg: Seg,
        items: usize,
    }
    let mut stack: Vec<Entry> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let mut indent = raw.len() - raw.trim_start_matches(' ').len();
        let mut rest = &raw[indent..];
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        while let Some(after) = rest
            .strip_prefix('-')
            .filter(|a| a.is_empty() || a.starts_with(' '))
        {
            while stack.last().is_some_and(|e| {
                e.indent > indent || (e.indent == indent && matches!(e.seg, Seg::Item(_)))
            }) {
                stack.pop();
            }
            let index = match stack.last_mut() {
                Some(parent) => {
                    parent.items += 1;
                    parent.items - 1
                }
                None => 0,
            };
            stack.push(Entry {
                indent,
                seg: Seg::Item(index),
                items: 0,
            });
            let spaces = after.len() - after.trim_start_matches(' ').len();
            indent += 1 + spaces;
            rest = after.trim_start_matches(' ');
        }
        let key = rest
            .split_once(':')
            .filter(|(_, v)| v.is_empty() || v.starts_with(' '))
            .map(|(k, _)| k.trim().trim_matches(|c| c == '"' || c == '\''))
            .filter(|k| !k.is_empty() && !k.starts_with('{') && !k.starts_with('['));
        if let Some(key) = key {
            while stack.last().is_some_and(|e| e.indent >= indent) {
                stack.pop();
            }
            stack.push(Entry {
                indent,
                seg: Seg::Key(key.to_string()),
                items: 0,
            });
        }
        let mut path = String::new();
        for e in &stack {
            match &e.seg {
                Seg::Key(k) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                }
                Seg::Item(i) => path.push_str(&format!("[{i}]")),
            }
        }
        if !f(n as u64 + 1, indent as u64 + 1, &path) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{key_path_at, place_of_key};

    const DOC: &str = "\
server:
  listen: x
  limits:
    idle_timeout: 5s
routes:
  - name: a
    upstream: u
    rules:
      - path_prefix: /admin
        allow_roles: [admin]
  - name: b
    host: h
users:
- username: z
  password_hash: p
";

    #[test]
    fn key_paths_follow_indentation_and_list_items() {
        assert_eq!(key_path_at(DOC, 2), "server.listen");
        assert_eq!(key_path_at(DOC, 4), "server.limits.idle_timeout");
        assert_eq!(key_path_at(DOC, 6), "routes[0].name");
        assert_eq!(key_path_at(DOC, 10), "routes[0].rules[0].allow_roles");
        assert_eq!(key_path_at(DOC, 12), "routes[1].host");
        assert_eq!(key_path_at(DOC, 14), "users[0].username");
        assert_eq!(key_path_at(DOC, 15), "users[0].password_hash");
    }

    #[test]
    fn a_key_path_is_found_where_it_is_written_or_at_its_nearest_parent() {
        assert_eq!(
            place_of_key(DOC, "server.limits.idle_timeout"),
            Some((4, 5))
        );
        assert_eq!(
            place_of_key(DOC, "routes[0].rules[0].allow_roles"),
            Some((10, 9))
        );
        assert_eq!(place_of_key(DOC, "routes[1].host"), Some((12, 5)));
        // A list item: its first line.
        assert_eq!(place_of_key(DOC, "routes[1]"), Some((11, 5)));
        assert_eq!(place_of_key(DOC, "users[0].password_hash"), Some((15, 3)));
        // Left out: the section that should hold it.
        assert_eq!(
            place_of_key(DOC, "server.limits.shutdown_grace"),
            Some((3, 3))
        );
        assert_eq!(place_of_key(DOC, "routes[1].upstream"), Some((11, 5)));
        assert_eq!(place_of_key(DOC, "tokens.secret"), None);
        // A blank or comment line is named by the key above it, as before.
        assert_eq!(key_path_at("a:\n  b: 1\n\n# c\n", 4), "a.b");
    }
}
