//! Running the real `gatehouse` binary in tests: start it on chosen ports with a config file,
//! read its log, signal it, replace its config the way editors do.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{base_yaml, Upstream, SECRET};

pub struct Binary {
    pub child: Child,
    pub addr: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    pub log: PathBuf,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Binary {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

pub fn config(up: &Upstream, port: u16, admin: u16, routes: &str) -> String {
    base_yaml(&up.url(), routes)
        .replace("  listen: \"127.0.0.1:0\"\n", &format!("  listen: \"127.0.0.1:{port}\"\n"))
        .replace("  secret: \"${TEST_SECRET}\"", &format!("  secret: \"{SECRET}\""))
        + &format!("admin:\n  listen: \"127.0.0.1:{admin}\"\n  token: \"admin-token-0123456789\"\nlogging:\n  format: json\n")
}

/// Replaces the file the way editors do: write a new file, rename it over the old one.
pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub async fn start(dir: &Path, text: &str, port: u16, admin: u16) -> Binary {
    start_with(
        dir,
        text,
        port,
        admin,
        Command::new(env!("CARGO_BIN_EXE_gatehouse")),
    )
    .await
}

/// Like [`start`], with these environment variables set for the process.
pub async fn start_with_env(
    dir: &Path,
    text: &str,
    port: u16,
    admin: u16,
    env: &[(&str, &Path)],
) -> Binary {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    for (name, value) in env {
        cmd.env(name, value);
    }
    start_with(dir, text, port, admin, cmd).await
}

/// Like [`start`], but the process may use only CPU 0 (`taskset`, which execs the binary, so
/// the PID is the gateway's): the binary then runs its single-threaded runtime.
pub async fn start_on_one_cpu(dir: &Path, text: &str, port: u16, admin: u16) -> Binary {
    let mut taskset = Command::new("taskset");
    taskset.args(["-c", "0", env!("CARGO_BIN_EXE_gatehouse")]);
    start_with(dir, text, port, admin, taskset).await
}

async fn start_with(dir: &Path, text: &str, port: u16, admin: u16, mut cmd: Command) -> Binary {
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, text).unwrap();
    let log = dir.join("gatehouse.log");
    let child = cmd
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let bin = Binary {
        child,
        addr,
        admin: format!("127.0.0.1:{admin}").parse().unwrap(),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the binary did not start: {}",
            bin.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bin
}

pub async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
