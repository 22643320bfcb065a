//! Users from the config (SPEC §3) and password hashes (SPEC §6); the checks themselves run
//! in [`super::hasher`]. An unknown or disabled user is checked against a dummy hash with the
//! same parameters, so the answer takes as long as for a wrong password.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;

#[derive(Debug, Clone)]
pub struct User {
    /// As written in the config; shown upstream and in tokens.
    pub username: String,
    pub password_hash: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub disabled: bool,
    /// `oidc: PROVIDER_ID`: that provider's user of the same name may sign in as this user
    /// (without it, a provider login with this name is refused: no takeover by name).
    pub oidc: Option<String>,
}

impl User {
    /// A short digest of the password hash: a session remembers it, so a password change
    /// ends the session at its next refresh.
    pub fn credential_fingerprint(&self) -> String {
        fingerprint(&self.password_hash)
    }
}

pub fn fingerprint(password_hash: &str) -> String {
    use base64::Engine as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, password_hash.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
}

/// Lowercased and trimmed: `Alice ` and `alice` are one user (and one brute-force counter).
pub fn canonical_username(name: &str) -> String {
    name.trim().to_lowercase()
}

#[derive(Debug, Clone)]
pub struct Users {
    by_name: HashMap<String, Arc<User>>,
    dummy_hash: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
pub enum HashFormatError {
    #[error("not a PHC string (expected `$argon2id$v=19$m=...,t=...,p=...$salt$hash`)")]
    NotPhc,
    #[error("the PHC string uses `{0}`, not argon2id, argon2i or argon2d")]
    NotArgon2(String),
}

/// Checks that a configured hash is a PHC argon2 string.
pub fn check_hash_format(hash: &str) -> Result<(), HashFormatError> {
    let parsed = PasswordHash::new(hash).map_err(|_| HashFormatError::NotPhc)?;
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => Ok(()),
        other => Err(HashFormatError::NotArgon2(other.to_string())),
    }
}

/// Hashes a password as argon2id with the crate's default (OWASP) parameters.
pub fn hash_password(password: &[u8]) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| argon2::password_hash::Error::Crypto)?;
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password, &salt)?
        .to_string())
}

impl Users {
    /// `users` must already be checked (PHC format, no duplicates). Computes the dummy
    /// hash with the parameters of the first user's hash, so unknown users cost the same.
    pub fn new(users: Vec<User>) -> Users {
        let dummy_hash = dummy_hash_like(users.first().map(|u| u.password_hash.as_str()));
        let by_name = users
            .into_iter()
            .map(|u| (canonical_username(&u.username), Arc::new(u)))
            .collect();
        Users {
            by_name,
            dummy_hash: dummy_hash.into(),
        }
    }

    pub fn get(&self, canonical: &str) -> Option<&Arc<User>> {
        self.by_name.get(canonical)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<User>> {
        self.by_name.values()
    }

    pub fn dummy_hash(&self) -> Arc<str> {
        self.dummy_hash.clone()
    }
}

fn dummy_hash_like(template: Option<&str>) -> String {
    let params = template
        .and_then(|t| PasswordHash::new(t).ok())
        .and_then(|h| argon2::Params::try_from(&h).ok())
        .unwrap_or_default();
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"gatehouse-dummy!").ok();
    salt.and_then(|s| {
        argon
            .hash_password(b"no user has this password", &s)
            .ok()
            .map(|h| h.to_string())
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_canonical_by_trimming_and_lowercasing() {
        assert_eq!(canonical_username("  Alice "), "alice");
        assert_eq!(canonical_username("BOB"), "bob");
    }

    #[test]
    fn only_phc_argon2_hashes_are_accepted() {
        let good = hash_password(b"pw").unwrap();
        assert!(check_hash_format(&good).is_ok());
        assert!(check_hash_format("plaintext").is_err());
        assert!(check_hash_format("$2b$12$abcdefghijklmnopqrstuv").is_err());
        let other_algorithm = good.replacen("argon2id", "balloon", 1);
        assert!(matches!(
            check_hash_format(&other_algorithm),
            Err(HashFormatError::NotArgon2(_))
        ));
    }

    #[test]
    fn the_dummy_hash_uses_the_users_parameters() {
        let users = Users::new(vec![User {
            username: "a".into(),
            password_hash: hash_password(b"x").unwrap(),
            email: None,
            roles: vec![],
            disabled: false,
            oidc: None,
        }]);
        let dummy = users.dummy_hash();
        let parsed = PasswordHash::new(&dummy).unwrap();
        let params = argon2::Params::try_from(&parsed).unwrap();
        assert_eq!(params.m_cost(), argon2::Params::default().m_cost());
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }
}
