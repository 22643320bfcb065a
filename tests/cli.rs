//! The `gatehouse` command (SPEC §2): exit codes and error messages.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

fn gatehouse() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    c.env_remove("GATEHOUSE_CONFIG");
    c
}

#[test]
fn check_accepts_the_example_config() {
    let out = gatehouse()
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.yaml"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("configuration is valid")
            && stdout.contains("routes: 1")
            && stdout.contains("users: 2"),
        "{stdout}"
    );
}

#[test]
fn every_shipped_example_config_is_valid() {
    // examples/configs/tls.yaml points at the operator's own certificates; it is exercised by
    // tests/tls.rs with generated ones.
    for config in [
        "gateway.yaml",
        "examples/compose/gateway.yaml",
        "examples/configs/redis.yaml",
        "examples/configs/routes.yaml",
    ] {
        let out = gatehouse()
            .args(["check", "--config"])
            .arg(format!("{}/{config}", env!("CARGO_MANIFEST_DIR")))
            .env("GATEHOUSE_ADMIN_TOKEN", "an-admin-token-of-16+")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{config}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_names_the_file_line_and_key_of_a_misspelled_key() {
    let dir = support::temp_dir();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.yaml"))
        .unwrap()
        .replace(
            "    upstream: \"http://127.0.0.1:3000\"",
            "    upstrem: \"http://127.0.0.1:3000\"",
        );
    let line = text.lines().position(|l| l.contains("upstrem")).unwrap() + 1;
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/keys/demo-signing.pem"),
        dir.join("demo.pem"),
    )
    .unwrap();
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, text.replace("keys/demo-signing.pem", "demo.pem")).unwrap();
    let out = gatehouse()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:{line}:5: routes[0].upstrem: unknown field `upstrem`",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}\nexpected: {expected}");
    assert!(stderr.starts_with("error: "), "{stderr}");
}

#[test]
fn check_reports_a_missing_file_and_env_config_is_honoured() {
    let out = gatehouse()
        .env("GATEHOUSE_CONFIG", "/nonexistent/gw.yaml")
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/gw.yaml: cannot read the file")
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        gatehouse()
            .arg("frobnicate")
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        gatehouse()
            .args(["gen-key", "--alg", "HS256"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        gatehouse()
            .args(["check", "--bogus"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn hash_password_prints_a_verifiable_argon2id_hash() {
    let mut child = gatehouse()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret pass\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let parsed = PasswordHash::new(&hash).unwrap();
    assert!(argon2::Argon2::default()
        .verify_password(b"s3cret pass", &parsed)
        .is_ok());
    assert!(argon2::Argon2::default()
        .verify_password(b"s3cret pass\n", &parsed)
        .is_err());

    let mut child = gatehouse()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    assert_eq!(
        child.wait_with_output().unwrap().status.code(),
        Some(1),
        "an empty password is refused"
    );
}

#[test]
fn gen_key_prints_keys_the_config_accepts() {
    for alg in ["EdDSA", "ES256", "RS256"] {
        let out = gatehouse()
            .args(["gen-key", "--alg", alg])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let pem = String::from_utf8(out.stdout).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        gatehouse::install_crypto_providers();
        let alg = gatehouse::authenticate::tokens::parse_algorithm(alg).unwrap();
        assert!(
            gatehouse::authenticate::tokens::KeySet::asymmetric(alg, pem.as_bytes(), &[]).is_ok()
        );
    }
}
