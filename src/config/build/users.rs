//! `users:` and `users_file`: canonical names, argon2 hashes, and no name twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::diagnose::{parse_error, FileKind};
use super::{resolve, Ctx};
use crate::authenticate::users::{canonical_username, check_hash_format, User};
use crate::config::expand::with_lookup;
use crate::config::file::{self, S};
use crate::config::read_bounded;

/// `users` and `users_file`: inline users first, then the file's, one namespace.
pub(super) fn build_users(
    ctx: &mut Ctx<'_>,
    f: &file::File,
    base: &Path,
    lookup: impl Fn(&str) -> Option<String> + Clone + 'static,
) -> (Vec<User>, Option<PathBuf>) {
    let mut users = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    collect_users(ctx, "users", &f.users, &mut users, &mut seen);
    let users_file = f.users_file.as_ref().map(|p| resolve(base, &p.value));
    if let (Some(path), Some(spanned)) = (&users_file, &f.users_file) {
        match read_bounded(path).and_then(|b| String::from_utf8(b).map_err(std::io::Error::other)) {
            Err(e) => ctx.err(
                spanned.referenced,
                "users_file",
                format!("cannot read `{}`: {e}", path.display()),
            ),
            Ok(text) => {
                let uname = path.display().to_string();
                let parsed: Result<file::UsersFile, _> =
                    with_lookup(lookup.clone(), || serde_saphyr::from_str(&text));
                match parsed {
                    Err(e) => ctx
                        .errors
                        .push(parse_error(&uname, FileKind::Users, &text, &e)),
                    Ok(uf) => {
                        let mut uctx = Ctx {
                            file: uname,
                            text: &text,
                            errors: ctx.errors,
                            links: Vec::new(),
                        };
                        collect_users(&mut uctx, "users", &uf.users, &mut users, &mut seen);
                        for (at, key, id) in uctx.links {
                            // Reported against the main file's context below; keep the place.
                            ctx.links
                                .push((at, format!("{} ({key})", path.display()), id));
                        }
                    }
                }
            }
        }
    }

    (users, users_file)
}

fn collect_users(
    ctx: &mut Ctx<'_>,
    key: &str,
    list: &[S<file::User>],
    users: &mut Vec<User>,
    seen: &mut HashMap<String, String>,
) {
    for (i, u) in list.iter().enumerate() {
        let u_key = format!("{key}[{i}]");
        let name = u.value.username.value.0.clone();
        let canonical = canonical_username(&name);
        if canonical.is_empty() || canonical.contains(char::is_control) {
            ctx.err(
                u.value.username.referenced,
                &format!("{u_key}.username"),
                "must not be empty",
            );
            continue;
        }
        let here = format!("{}:{}", ctx.file, u.value.username.referenced.line());
        if let Some(first) = seen.insert(canonical.clone(), here) {
            ctx.err(
                u.value.username.referenced,
                &format!("{u_key}.username"),
                format!("`{name}` is the same user as the one at {first} (usernames are compared trimmed and lowercased)"),
            );
            continue;
        }
        let hash = &u.value.password_hash;
        if let Err(e) = check_hash_format(&hash.value) {
            ctx.err(
                hash.referenced,
                &format!("{u_key}.password_hash"),
                format!("{e}; create one with `gatehouse hash-password`"),
            );
            continue;
        }
        users.push(User {
            username: name.trim().to_string(),
            password_hash: hash.value.0.clone(),
            email: u.value.email.as_ref().map(|e| e.0.clone()),
            roles: u.value.roles.iter().map(|r| r.0.clone()).collect(),
            disabled: u.value.disabled,
            oidc: u.value.oidc.as_ref().map(|o| o.value.0.clone()),
        });
        if let Some(o) = &u.value.oidc {
            ctx.links
                .push((o.referenced, format!("{u_key}.oidc"), o.value.0.clone()));
        }
    }
}
