//! Users from the config (SPEC §3) and password checks (SPEC §6). Argon2 runs on dedicated
//! low-priority threads, admitted by a semaphore of `max_concurrent_hashes`; a login that
//! cannot get a permit within [`HASH_QUEUE_WAIT`] is refused with 503 instead of queueing
//! forever. An
//! unknown or disabled user is checked against a dummy hash with the same parameters, so the
//! answer takes as long as for a wrong password.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

/// How long a login waits for an argon2 permit before answering 503.
pub const HASH_QUEUE_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct User {
    /// As written in the config; shown upstream and in tokens.
    pub username: String,
    pub password_hash: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub disabled: bool,
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

#[derive(Debug, thiserror::Error)]
#[error("too many password checks are waiting")]
pub struct HashOverloaded;

type Job = Box<dyn FnOnce() + Send>;

/// Argon2 admission and isolation: a semaphore admits `max_concurrent_hashes` checks, which
/// run on as many dedicated threads at `SCHED_IDLE` priority. The kernel then always prefers
/// request handling over hashing, so a login storm slows logins down (and past
/// [`HASH_QUEUE_WAIT`] turns them into 503s) instead of slowing every proxied request.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    jobs: std::sync::mpsc::Sender<Job>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadPriority, ThreadSchedulePolicy,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(e) =
            set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle)
        {
            tracing::debug!(error = ?e, "could not lower the hashing threads' priority");
        }
    }
}

impl Hasher {
    pub fn new(max_concurrent: usize) -> Hasher {
        let n = max_concurrent.max(1);
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..n {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("gatehouse-argon2-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            // The Hasher is gone: so is this thread.
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hashing thread");
            }
        }
        Hasher {
            permits: Arc::new(Semaphore::new(n)),
            jobs,
        }
    }

    /// Verifies `password` against `hash` off the async executor. A malformed hash is
    /// simply a mismatch.
    pub async fn verify(&self, hash: Arc<str>, password: String) -> Result<bool, HashOverloaded> {
        let permit = tokio::time::timeout(HASH_QUEUE_WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| HashOverloaded)?
            .map_err(|_| HashOverloaded)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let verdict = PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            });
            let _ = tx.send(verdict);
        });
        self.jobs.send(job).map_err(|_| HashOverloaded)?;
        let verdict = rx.await.map_err(|_| HashOverloaded)?;
        drop(permit);
        Ok(verdict)
    }
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

    #[tokio::test]
    async fn verify_accepts_the_right_password_only() {
        let hash: Arc<str> = hash_password(b"correct horse").unwrap().into();
        let hasher = Hasher::new(1);
        assert!(hasher
            .verify(hash.clone(), "correct horse".into())
            .await
            .unwrap());
        assert!(!hasher.verify(hash, "wrong".into()).await.unwrap());
    }

    #[test]
    fn the_dummy_hash_uses_the_users_parameters() {
        let users = Users::new(vec![User {
            username: "a".into(),
            password_hash: hash_password(b"x").unwrap(),
            email: None,
            roles: vec![],
            disabled: false,
        }]);
        let dummy = users.dummy_hash();
        let parsed = PasswordHash::new(&dummy).unwrap();
        let params = argon2::Params::try_from(&parsed).unwrap();
        assert_eq!(params.m_cost(), argon2::Params::default().m_cost());
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }
}
