//! The operator's words for a YAML file the parser refused: what went wrong, on which
//! line, and the fix (a key written twice, one value where a list belongs, an unclosed quote,
//! a line indented too far or with a tab, a file that is empty or not a set of sections).

use crate::config::error::{key_path_at, ConfigError};

/// The operator's words for the mistakes people make most, from the parser's structured error
/// (never its text): a key written twice, one value where a list belongs, one value where a
/// section belongs, a value that is not the number or boolean the key takes. The fix is
/// built from the line itself.
fn plain_words(err: &serde_saphyr::Error, text: &str, line: u64) -> Option<String> {
    let source = usize::try_from(line)
        .ok()
        .and_then(|l| text.lines().nth(l.checked_sub(1)?))
        .unwrap_or("");
    let (key, value) = match source.trim().trim_start_matches("- ").split_once(':') {
        Some((k, v)) => (k.trim(), v.trim()),
        None => ("", source.trim()),
    };
    // The error itself, under the snippet and alias wrappers the parser puts around it.
    let mut err = err;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = err
    {
        err = error;
    }
    match err {
        serde_saphyr::Error::DuplicateMappingKey { key: Some(k), .. } => Some(format!(
            "`{k}` is written twice in the same section; write it once (merge the two into one)"
        )),
        serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => {
            Some("a key is written twice in the same section; write it once".into())
        }
        serde_saphyr::Error::Unexpected {
            expected: "sequence start",
            ..
        } if !key.is_empty() => Some(format!(
            "`{key}` takes a list; write it in brackets, e.g. `{key}: [{value}]`"
        )),
        serde_saphyr::Error::Unexpected {
            expected: "mapping start",
            ..
        } if !key.is_empty() => Some(format!(
            "`{key}` is a section, not a value: put its keys on the lines below it, indented"
        )),
        serde_saphyr::Error::Unexpected {
            expected: "string scalar" | "scalar",
            ..
        } if !key.is_empty() => Some(format!(
            "`{key}` takes one value (text in quotes), not a list or a section"
        )),
        serde_saphyr::Error::InvalidScalar { ty, .. } => {
            let shown = value.trim_matches(|c| c == '"' || c == '\'');
            let expected = match *ty {
                "bool" | "boolean" => "true or false".to_string(),
                "u8" => "a whole number from 0 to 255".to_string(),
                "u16" => "a whole number from 0 to 65535".to_string(),
                "u32" => "a whole number from 0 to 4294967295".to_string(),
                "u64" | "u128" | "usize" => "a whole number, 0 or more".to_string(),
                "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".to_string(),
                "f32" | "f64" => "a number".to_string(),
                other => format!("a value of type {other}"),
            };
            Some(format!("expected {expected}, not `{shown}`"))
        }
        _ => None,
    }
}

/// Which kind of file was refused, for the advice about its shape.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FileKind {
    Config,
    Users,
}

pub(super) fn parse_error(
    file: &str,
    kind: FileKind,
    text: &str,
    err: &serde_saphyr::Error,
) -> ConfigError {
    let (line, column) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let rendered = err.to_string();
    // The library renders `error: line L column C: message` and then a snippet; keep the
    // message and the snippet, drop the duplicated position.
    let message = rendered
        .strip_prefix("error: ")
        .and_then(|m| m.split_once(": "))
        .map(|(_, rest)| rest.to_string())
        .unwrap_or(rendered);
    // The first line says what is wrong; the rest is the library's snippet, which names the
    // text `<input>`: name the file instead.
    let (message, snippet) = match message.split_once('\n') {
        Some((first, rest)) => (
            first.to_string(),
            Some(rest.replace("<input>", file)).filter(|s| !s.trim().is_empty()),
        ),
        None => (message, None),
    };
    // The snippet repeats the library's words under the marked place: ours go there too.
    let (message, snippet) = match plain_words(err, text, line) {
        Some(plain) => {
            let snippet = snippet.map(|s| s.replace(&message, &plain));
            (plain, snippet)
        }
        None => (message, snippet),
    };
    let key = if line > 0 {
        key_path_at(text, line)
    } else {
        String::new()
    };
    let error = ConfigError {
        file: file.to_string(),
        line,
        column,
        key,
        message,
        snippet,
    };
    unclosed_quote(text, line)
        .or_else(|| unclosed_bracket(text, line))
        .or_else(|| tab_indented(text, line))
        .or_else(|| over_indented(text, line))
        .or_else(|| misaligned(text, line))
        .or_else(|| not_sections(kind, text, line))
        .or_else(|| no_space_after_colon(text, line))
        .or_else(|| no_colon(text, line))
        .map(|(line, key, message)| ConfigError {
            line,
            column: u64::from(line > 0),
            key,
            // The snippet marks the parser's place with its words: ours there too, and no
            // snippet for a whole-file problem or one that marks another line than ours.
            snippet: error
                .snippet
                .as_ref()
                .filter(|_| line > 0 && line == error.line)
                .map(|s| s.replace(&error.message, &message)),
            message,
            ..error.clone()
        })
        .unwrap_or(error)
}

/// The text's lines up to `line` (1-based), numbered, without blank and comment lines.
fn lines_before(text: &str, line: u64) -> Vec<(u64, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l))
        .take_while(|(n, _)| *n <= line)
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect()
}

/// A parse error after a line whose double quotes do not pair up: the parser reads on to the
/// next quote and reports a later line, under a later key. Name the line that opened it.
fn unclosed_quote(text: &str, line: u64) -> Option<(u64, String, String)> {
    let (n, source) = lines_before(text, line)
        .into_iter()
        .filter(|(n, _)| *n < line)
        .find(|(_, l)| {
            // A double-quoted value whose quotes do not pair up on its line.
            let value = l.split_once(": ").map_or(*l, |(_, v)| v).trim_start();
            let unescaped = l.replace("\\\\", "").replace("\\\"", "");
            value.starts_with('"') && unescaped.matches('"').count() % 2 == 1
        })?;
    let key = key_path_at(text, n);
    Some((
        n,
        key,
        format!(
            "this value opens a quote it does not close: `{}`; add the closing `\"`",
            source.trim()
        ),
    ))
}

/// A parse error on a key indented deeper than the `key: value` line above it: YAML reads it as
/// part of that value. Name both keys and say how to indent.
fn over_indented(text: &str, line: u64) -> Option<(u64, String, String)> {
    let mut lines = lines_before(text, line).into_iter().rev();
    let (n, here) = lines.next().filter(|(n, _)| *n == line)?;
    let (_, above) = lines.next()?;
    let indent = |l: &str| l.len() - l.trim_start().trim_start_matches("- ").len();
    let (key_here, _) = here.trim().split_once(':')?;
    let (key_above, value_above) = above.trim().trim_start_matches("- ").split_once(':')?;
    if indent(here) <= indent(above) || value_above.trim().is_empty() {
        return None;
    }
    let parent = key_path_at(text, n - 1);
    let parent = parent.rsplit_once('.').map_or("", |(p, _)| p);
    let key = if parent.is_empty() {
        key_here.trim().to_string()
    } else {
        format!("{parent}.{}", key_here.trim())
    };
    Some((
        n,
        key,
        format!(
            "`{}` is indented more than `{}` above it, so YAML reads it as part of that value; \
             indent it exactly like `{}`",
            key_here.trim(),
            key_above.trim(),
            key_above.trim()
        ),
    ))
}

/// A parse error on a line indented with a tab, or just above one (a value the tabbed line
/// seems to continue): YAML indents with spaces only.
fn tab_indented(text: &str, line: u64) -> Option<(u64, String, String)> {
    let tabbed = |n: u64| {
        let here = text.lines().nth(usize::try_from(n).ok()?.checked_sub(1)?)?;
        let indent = &here[..here.len() - here.trim_start().len()];
        indent.contains('\t').then_some(n)
    };
    let at = tabbed(line).or_else(|| tabbed(line + 1))?;
    Some((
        at,
        String::new(),
        "this line is indented with a tab; YAML indents with spaces only: replace the tab with \
         spaces, as many as the lines around it use"
            .to_string(),
    ))
}

/// A file with nothing in it (or only comments), or whose top level is not `key: value`
/// sections (a list, a lone value).
fn not_sections(kind: FileKind, text: &str, line: u64) -> Option<(u64, String, String)> {
    let content = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && *l != "---");
    match content {
        None => Some((
            0,
            String::new(),
            "the file is empty; start from the example gateway.yaml (the minimum is a \
             listener, a signing key, a user and a route)"
                .to_string(),
        )),
        Some(first) if line <= 1 && (first.starts_with("- ") || !first.contains(':')) => Some((
            line,
            String::new(),
            match kind {
                FileKind::Config => {
                    "the file must be sections such as `server:`, `tokens:`, `users:` and \
                     `routes:`, each at the start of a line, not a list or a lone value"
                }
                FileKind::Users => {
                    "a users file holds one section, `users:`, at the start of a line, with the \
                     list of users indented under it"
                }
            }
            .to_string(),
        )),
        Some(_) => None,
    }
}

/// A word that can be one of our keys: a letter, then letters, digits, `_` and `-`.
fn plain_key(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_alphabetic())
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The key a line writes (after any `- `), and the column its text starts at (0-based).
fn key_of(line: &str) -> Option<(&str, usize)> {
    let indent = line.len() - line.trim_start().trim_start_matches("- ").len();
    let (key, _) = line[indent..].split_once(':')?;
    let key = key.trim();
    plain_key(key).then_some((key, indent))
}

/// A parse error at or after a value that opens `[` or `{` and does not close it — on its
/// line or on the lines down to the error (a flow list may span lines).
fn unclosed_bracket(text: &str, line: u64) -> Option<(u64, String, String)> {
    // The bracket depth a piece of text adds, quoted text and comments aside.
    let depth_of = |text: &str, mut depth: i32| {
        let mut quoted = false;
        for c in text.chars() {
            match c {
                '"' => quoted = !quoted,
                '[' | '{' if !quoted => depth += 1,
                ']' | '}' if !quoted => depth -= 1,
                '#' if !quoted => break,
                _ => {}
            }
        }
        depth
    };
    let lines = lines_before(text, line);
    let (_, (n, source)) = lines.iter().enumerate().find(|(i, (_, l))| {
        let value = l.split_once(": ").map_or("", |(_, v)| v).trim();
        if !(value.starts_with('[') || value.starts_with('{')) {
            return false;
        }
        let mut depth = depth_of(value, 0);
        for (_, later) in &lines[i + 1..] {
            if depth <= 0 {
                break;
            }
            depth = depth_of(later, depth);
        }
        depth > 0
    })?;
    let close = if source.split_once(": ")?.1.trim().starts_with('[') {
        ']'
    } else {
        '}'
    };
    Some((
        *n,
        key_path_at(text, *n),
        format!(
            "this value opens a bracket it does not close: `{}`; add the closing `{close}`",
            source.trim()
        ),
    ))
}

/// A parse error on a key that lines up with no key of its section above it (indented 3
/// spaces among keys at 4, or less than the section's first key): keys of one section must
/// start in the same column.
fn misaligned(text: &str, line: u64) -> Option<(u64, String, String)> {
    let lines = lines_before(text, line);
    let ((n, here), above) = lines.split_last()?;
    if *n != line {
        return None;
    }
    let (key, column) = key_of(here)?;
    // The keys above it, back to the line that opens its section (a key left of it).
    let section: Vec<(&str, usize)> = above
        .iter()
        .rev()
        .filter_map(|(_, l)| key_of(l))
        .take_while(|(_, c)| *c >= column)
        .collect();
    let (key_above, column_above) = *section.first()?;
    if section.iter().any(|(_, c)| *c == column) {
        return None;
    }
    Some((
        *n,
        key_path_at(text, *n),
        format!(
            "`{key}` starts in column {}, where no key of its section above it does \
             (`{key_above}` starts in column {}); keys of one section must line up exactly",
            column + 1,
            column_above + 1
        ),
    ))
}

/// A parse error on `key:value` — YAML needs a space after the colon, else it reads one word.
fn no_space_after_colon(text: &str, line: u64) -> Option<(u64, String, String)> {
    let here = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let body = here.trim_start().trim_start_matches("- ");
    let (key, value) = body.split_once(':')?;
    let plain = plain_key(key);
    // `http://…` in a list is a value, not a key.
    let glued =
        value.chars().next().is_some_and(|c| !c.is_whitespace()) && !value.starts_with("//");
    (plain && glued).then(|| {
        // The line is no key to YAML: the path names its section.
        let section = key_path_at(text, line);
        (
            line,
            if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            },
            format!(
                "`{}` needs a space after the colon: write `{key}: {value}`",
                body.trim_end()
            ),
        )
    })
}

/// A parse error on a line that is one bare word: a section or key without its `:`.
fn no_colon(text: &str, line: u64) -> Option<(u64, String, String)> {
    let (n, here) = lines_before(text, line).pop()?;
    let word = here.trim();
    let bare = plain_key(word);
    bare.then(|| {
        (
            n,
            String::new(),
            format!("`{word}` has no `:` after it; write `{word}:`"),
        )
    })
}
