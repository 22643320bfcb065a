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
        if n as u64 >= line {
            break;
        }
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
    }
    let mut out = String::new();
    for e in &stack {
        match &e.seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Item(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::key_path_at;

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
}
