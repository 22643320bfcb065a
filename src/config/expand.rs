//! `${VAR}` substitution inside string values (SPEC §3). Every string in `gateway.yaml` is a
//! [`Text`]; while a file is parsed, [`with_lookup`] installs the function that resolves
//! variables, so `check`, start-up, reload and tests run the same code and tests never touch
//! the process environment. An unset variable is a parse error at the value's line. `$$` is a
//! literal `$`.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Resolves an environment variable by name.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

type BoxedLookup = Box<dyn Fn(&str) -> Option<String>>;

thread_local! {
    static LOOKUP: RefCell<Option<BoxedLookup>> = const { RefCell::new(None) };
}

/// Runs `parse` with `lookup` resolving `${VAR}` in every [`Text`] it deserializes.
pub fn with_lookup<T>(
    lookup: impl Fn(&str) -> Option<String> + 'static,
    parse: impl FnOnce() -> T,
) -> T {
    let previous = LOOKUP.with(|slot| slot.borrow_mut().replace(Box::new(lookup)));
    let out = parse();
    LOOKUP.with(|slot| *slot.borrow_mut() = previous);
    out
}

/// Expands `${VAR}` in `input` with `lookup`.
pub fn expand(input: &str, lookup: Lookup<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in `{input}`"))?;
            let name = &body[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a variable name (letters, digits and `_`)"
                ));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A string value after `${VAR}` substitution.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Text(pub String);

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        LOOKUP
            .with(|slot| match slot.borrow().as_deref() {
                Some(lookup) => expand(v, lookup),
                None => expand(v, &|_| None),
            })
            .map(Text)
            .map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SECRET").then(|| "s3cr3t".to_string())
    }

    #[test]
    fn variables_are_substituted_and_unset_ones_are_named() {
        assert_eq!(expand("a-${SECRET}-b", &env).as_deref(), Ok("a-s3cr3t-b"));
        assert_eq!(expand("$${SECRET}", &env).as_deref(), Ok("${SECRET}"));
        assert_eq!(expand("cost $5", &env).as_deref(), Ok("cost $5"));
        let err = expand("${NOPE}", &env).unwrap_err();
        assert!(err.contains("`NOPE`"), "{err}");
        assert!(expand("${BAD NAME}", &env).is_err());
        assert!(expand("${OPEN", &env).is_err());
    }
}
