//! `tokens:` and `cookies:`: algorithm, keys, lifetimes, and the cookie policy they imply.

use std::path::Path;

use serde_saphyr::Location;

use super::{resolve, Ctx};
use crate::authenticate::cookies::{parse_same_site, CookiePolicy};
use crate::authenticate::sessions::TokenSettings;
use crate::authenticate::tokens::{is_symmetric, parse_algorithm, KeySet};
use crate::canonicalize::canonical_host;
use crate::config::expand::Text;
use crate::config::file::{self, S};
use crate::config::read_bounded;

pub(super) fn build_tokens(
    ctx: &mut Ctx<'_>,
    t: &file::Tokens,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Option<TokenSettings> {
    let alg = match parse_algorithm(&t.algorithm.value) {
        Ok(a) => a,
        Err(e) => {
            ctx.err(t.algorithm.referenced, "tokens.algorithm", e.to_string());
            return None;
        }
    };
    for (d, key) in [
        (&t.access_ttl, "tokens.access_ttl"),
        (&t.refresh_ttl, "tokens.refresh_ttl"),
        (&t.session_max_age, "tokens.session_max_age"),
    ] {
        if secs(d) == 0 {
            ctx.err(d.referenced, key, "must be at least 1s");
        }
    }
    // The refresh token is first used when the access token has expired: if it has expired
    // by then too, every session ends after `access_ttl`, however active the person.
    let (access, refresh) = (secs(&t.access_ttl), secs(&t.refresh_ttl));
    if refresh != 0 && refresh < access {
        let shown = crate::config::units::format_seconds;
        warnings.push(format!(
            "tokens.refresh_ttl: {} is shorter than tokens.access_ttl ({}): a refresh token is \
             first used when its access token expires, and by then it has expired too, so every \
             session ends after {} and the person signs in again; make refresh_ttl the longer",
            shown(refresh),
            shown(access),
            shown(access)
        ));
    }
    if t.issuer.is_empty() || t.audience.is_empty() {
        ctx.err(
            Location::UNKNOWN,
            "tokens.issuer",
            "issuer and audience must not be empty",
        );
    }
    // The key that seals what sessions keep secret (an IdP refresh token): derived from the
    // signing secret, so rotating the signing key also rotates it.
    let mut seal_material: Vec<u8> = Vec::new();
    let keys = if is_symmetric(alg) {
        if let Some(k) = &t.signing_key {
            ctx.err(
                k.referenced,
                "tokens.signing_key",
                format!("is for asymmetric algorithms; {alg:?} uses tokens.secret"),
            );
        }
        if let Some(k) = t.verify_keys.first() {
            ctx.err(
                k.referenced,
                "tokens.verify_keys",
                format!("are for asymmetric algorithms; {alg:?} uses tokens.secret"),
            );
        }
        match &t.secret {
            None => {
                ctx.err(Location::UNKNOWN, "tokens.secret", format!("is required for {alg:?} (at least 32 bytes, e.g. from ${{GATEHOUSE_SECRET}})"));
                None
            }
            Some(s) => {
                seal_material = s.value.as_bytes().to_vec();
                KeySet::symmetric(alg, s.value.as_bytes())
                    .map_err(|e| ctx.err(s.referenced, "tokens.secret", e.to_string()))
                    .ok()
            }
        }
    } else {
        if let Some(s) = &t.secret {
            ctx.err(
                s.referenced,
                "tokens.secret",
                format!("is for HS* algorithms; {alg:?} uses tokens.signing_key"),
            );
        }
        let read = |ctx: &mut Ctx<'_>, p: &S<Text>, key: &str| {
            let path = resolve(base, &p.value);
            read_bounded(&path)
                .map_err(|e| {
                    // A missing key is the first thing a new operator (or container) meets.
                    let hint = if e.kind() == std::io::ErrorKind::NotFound {
                        format!(
                            "; create one with `gatehouse gen-key --out {}` (in a container, mount the folder that holds it)",
                            path.display()
                        )
                    } else {
                        String::new()
                    };
                    ctx.err(
                        p.referenced,
                        key,
                        format!("cannot read `{}`: {e}{hint}", path.display()),
                    )
                })
                .ok()
        };
        let Some(signing) = &t.signing_key else {
            ctx.err(
                Location::UNKNOWN,
                "tokens.signing_key",
                format!(
                    "is required for {alg:?}; create one with `gatehouse gen-key --alg {alg:?}`"
                ),
            );
            return None;
        };
        let signing_pem = read(ctx, signing, "tokens.signing_key")?;
        seal_material = signing_pem.clone();
        let mut verify_pems = Vec::new();
        for (i, v) in t.verify_keys.iter().enumerate() {
            verify_pems.extend(read(ctx, v, &format!("tokens.verify_keys[{i}]")));
        }
        let verify_refs: Vec<&[u8]> = verify_pems.iter().map(Vec::as_slice).collect();
        match KeySet::asymmetric(alg, &signing_pem, &verify_refs) {
            Ok(k) => Some(k),
            Err(e) => {
                // Tell which file is at fault.
                let culprit = if KeySet::asymmetric(alg, &signing_pem, &[]).is_err() {
                    (signing.referenced, "tokens.signing_key".to_string())
                } else {
                    (
                        t.verify_keys
                            .first()
                            .map(|v| v.referenced)
                            .unwrap_or(Location::UNKNOWN),
                        "tokens.verify_keys".to_string(),
                    )
                };
                ctx.err(culprit.0, &culprit.1, format!("{e} (algorithm {alg:?})"));
                None
            }
        }
    }?;
    Some(TokenSettings {
        keys,
        issuer: t.issuer.0.clone(),
        audience: t.audience.0.clone(),
        access_ttl: secs(&t.access_ttl),
        refresh_ttl: secs(&t.refresh_ttl),
        session_max_age: secs(&t.session_max_age),
        reuse_grace: t.refresh_reuse_grace.0.as_secs(),
        leeway: t.leeway.0.as_secs(),
        cache: Default::default(),
        seal: crate::seal::SealKey::derive(&seal_material),
    })
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(super) fn build_cookies(
    ctx: &mut Ctx<'_>,
    c: &file::Cookies,
    _warnings: &mut Vec<String>,
) -> Option<CookiePolicy> {
    let mut ok = true;
    for (n, key) in [
        (&c.access_name, "cookies.access_name"),
        (&c.refresh_name, "cookies.refresh_name"),
    ] {
        if !is_token(&n.value) || n.value.starts_with("__") {
            ctx.err(
                n.referenced,
                key,
                format!(
                    "`{}` is not a cookie name (letters, digits, `-`, `_`; no leading `__`)",
                    &*n.value
                ),
            );
            ok = false;
        }
    }
    if *c.access_name.value == *c.refresh_name.value {
        ctx.err(
            c.refresh_name.referenced,
            "cookies.refresh_name",
            "must differ from cookies.access_name",
        );
        ok = false;
    }
    let same_site = parse_same_site(&c.same_site.value);
    match same_site {
        None => {
            ctx.err(
                c.same_site.referenced,
                "cookies.same_site",
                format!("`{}` is not strict, lax or none", &*c.same_site.value),
            );
            ok = false;
        }
        Some(cookie::SameSite::None) if !c.secure => {
            ctx.err(c.same_site.referenced, "cookies.same_site", "none requires cookies.secure: true (browsers drop SameSite=None cookies without Secure)");
            ok = false;
        }
        _ => {}
    }
    let domain = c.domain.as_ref().and_then(|d| {
        let v = d.value.trim_start_matches('.');
        match canonical_host(v) {
            Ok(h) if !h.is_empty() => Some(h),
            _ => {
                ctx.err(
                    d.referenced,
                    "cookies.domain",
                    format!("`{}` is not a domain", &*d.value),
                );
                None
            }
        }
    });
    let same_site = same_site?;
    ok.then(|| {
        CookiePolicy::new(
            &c.access_name.value,
            &c.refresh_name.value,
            c.secure,
            same_site,
            domain,
        )
    })
}

fn secs(d: &S<crate::config::units::Dur>) -> u64 {
    d.value.0.as_secs()
}
