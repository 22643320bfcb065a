//! The `gatehouse` command (SPEC §2): exit codes and error messages.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

fn gatehouse() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    c.env_remove("GATEHOUSE_CONFIG");
    c
}

/// Asserts that a finished command exited 0, showing its stderr otherwise; its stdout.
fn succeeded(out: std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `gatehouse gen-key --out PATH`, which must succeed.
fn gen_key(path: &std::path::Path) {
    succeeded(
        gatehouse()
            .args(["gen-key", "--out"])
            .arg(path)
            .output()
            .unwrap(),
    );
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
    // Lifetimes in the operator's words, as gateway.yaml writes them; counts in English.
    assert!(
        stdout.contains("access 5m, refresh 7d, session 30d"),
        "{stdout}"
    );
    assert!(stdout.contains("(2 public prefixes, 1 rule)"), "{stdout}");
}

#[test]
fn every_shipped_example_config_is_valid() {
    // examples/configs/tls.yaml points at the operator's own certificates: see below.
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

#[test]
fn gen_key_defaults_to_eddsa_and_out_writes_a_private_file_it_never_overwrites() {
    let dir = support::temp_dir();
    let path = dir.join("signing.pem");
    gen_key(&path);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    // EdDSA: an Ed25519 PKCS#8 key is 48 bytes of DER, one base64 line.
    assert_eq!(pem.lines().count(), 3, "an Ed25519 key: {pem}");
    let again = gatehouse()
        .args(["gen-key", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        pem,
        "the key is untouched"
    );
}

#[test]
fn check_warns_about_a_key_file_others_can_read() {
    let dir = support::temp_dir();
    let key = dir.join("k.pem");
    gen_key(&key);
    let yaml = format!(
        "server:\n  listen: \"127.0.0.1:0\"\ntokens:\n  signing_key: \"{}\"\nusers: []\nroutes:\n  - name: a\n    upstream: \"http://127.0.0.1:9\"\n",
        key.display()
    );
    let config = dir.join("gateway.yaml");
    std::fs::write(&config, yaml).unwrap();
    let check = || {
        succeeded(
            gatehouse()
                .args(["check", "--config"])
                .arg(&config)
                .output()
                .unwrap(),
        )
    };
    assert!(!check().contains("can be read by other users"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stdout = check();
    assert!(
        stdout.contains("tokens.signing_key") && stdout.contains("chmod 600"),
        "{stdout}"
    );
}

#[test]
fn help_shows_examples_and_reload_and_hash_password_lists_no_config_flag() {
    let out = gatehouse().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Examples:") && help.contains("kill -HUP"),
        "{help}"
    );
    assert!(help.contains("gen-key --out"), "{help}");
    let out = gatehouse()
        .args(["hash-password", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(!help.contains("--config"), "{help}");
}

#[tokio::test]
async fn health_exits_0_for_a_running_gateway_and_1_otherwise() {
    let up = support::Upstream::start().await;
    let gw = support::TestGateway::start(&support::base_yaml(&up.url(), support::default_routes()))
        .await;
    let url = format!("http://{}/.gatehouse/healthz", gw.addr);
    let out = tokio::task::spawn_blocking(move || {
        gatehouse()
            .args(["health", "--url", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    succeeded(out);
    // The default URL comes from the config's listener.
    let dir = support::temp_dir();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        support::base_yaml(&up.url(), support::default_routes())
            .replace("127.0.0.1:0", &gw.addr.to_string())
            .replace("${TEST_SECRET}", support::SECRET),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        gatehouse()
            .args(["health", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    succeeded(out);
    gw.stop().await;
    let port = support::unused_port();
    let dead = format!("http://127.0.0.1:{port}/.gatehouse/healthz");
    let out = tokio::task::spawn_blocking(move || {
        gatehouse()
            .args(["health", "--url", &dead])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

/// The image's default config (examples/docker/gateway.yaml, at /etc/gatehouse/gateway.yaml)
/// works with what the Dockerfile's commands mount next to it, and says what to do when the
/// key is not mounted.
#[test]
fn the_container_config_works_with_the_documented_mounts() {
    let dir = support::temp_dir();
    let config = dir.join("gateway.yaml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/docker/gateway.yaml"),
        &config,
    )
    .unwrap();
    let check = || {
        gatehouse()
            .args(["check", "--config"])
            .arg(&config)
            .env("GATEHOUSE_UPSTREAM", "http://host.docker.internal:3000")
            .output()
            .unwrap()
    };
    // Nothing mounted yet: the error names the key file and how to make one.
    let out = check();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tokens.signing_key") && stderr.contains("gatehouse gen-key --out"),
        "{stderr}"
    );
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    gen_key(&dir.join("keys/signing.pem"));
    std::fs::write(
        dir.join("users.yaml"),
        format!(
            "users:\n  - username: alice\n    password_hash: \"{}\"\n",
            support::hash_of("pw")
        ),
    )
    .unwrap();
    let stdout = succeeded(check());
    assert!(stdout.contains("listener: http://0.0.0.0:8080"), "{stdout}");
    assert!(stdout.contains("host.docker.internal:3000"), "{stdout}");
}

/// `gatehouse run` turns transparent huge pages off for its process (src/main.rs,
/// `no_huge_pages`): a 2 MiB page zeroed on first touch on the request thread stalled every
/// request in flight for milliseconds. Linux only; a kernel without `THP_enabled` in
/// /proc/PID/status (before 5.0) cannot show it, and the test says so.
#[cfg(target_os = "linux")]
#[test]
fn run_turns_transparent_huge_pages_off() {
    let dir = support::temp_dir();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        support::base_yaml("http://127.0.0.1:9", support::default_routes())
            .replace("${TEST_SECRET}", support::SECRET),
    )
    .unwrap();
    let mut child = gatehouse()
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let thp = || {
        std::fs::read_to_string(&status)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:").map(|v| v.trim().to_string()))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = thp();
    while seen.as_deref() == Some("1") && std::time::Instant::now() < deadline {
        // A test thread, not an executor's: waiting for another process, with a deadline.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(std::time::Duration::from_millis(20));
        seen = thp();
    }
    let _ = child.kill();
    let _ = child.wait();
    match seen {
        None => eprintln!("SKIPPED: this kernel has no THP_enabled in /proc/PID/status"),
        Some(value) => assert_eq!(value, "0", "transparent huge pages still on"),
    }
}

/// `examples/configs/tls.yaml` names files under `/etc/gatehouse`; with those paths pointed at
/// generated certificates and keys of the same kinds it must pass `check`, and say what its
/// https route trusts.
#[test]
fn the_shipped_tls_example_is_valid_with_its_files_in_place() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = support::temp_dir();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    std::fs::write(dir.join("internal-ca.pem"), ca.pem()).unwrap();
    for (cert, key, name) in [
        ("fullchain.pem", "privkey.pem", "app.example.com"),
        ("gatehouse-client.pem", "gatehouse-client.key", "gatehouse"),
    ] {
        let pair = KeyPair::generate().unwrap();
        let issued = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&pair, &issuer)
            .unwrap();
        std::fs::write(dir.join(cert), issued.pem()).unwrap();
        std::fs::write(dir.join(key), pair.serialize_pem()).unwrap();
    }
    gen_key(&dir.join("signing.pem"));
    gen_key(&dir.join("previous.pem"));
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/configs/tls.yaml"
    ))
    .unwrap()
    .replace(
        "/etc/gatehouse/users.yaml",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/example-users.yaml"),
    )
    .replace("/etc/gatehouse/tls/", &format!("{}/", dir.display()))
    .replace("/etc/gatehouse/keys/", &format!("{}/", dir.display()));
    assert!(!text.contains("/etc/gatehouse"), "{text}");
    let path = dir.join("tls.yaml");
    std::fs::write(&path, text).unwrap();
    let stdout = succeeded(
        gatehouse()
            .args(["check", "--config"])
            .arg(&path)
            .env("GATEHOUSE_ADMIN_TOKEN", "an-admin-token-of-16+")
            .output()
            .unwrap(),
    );
    assert!(
        stdout.contains("TLS: own CAs, name billing.internal, client certificate"),
        "{stdout}"
    );
}
