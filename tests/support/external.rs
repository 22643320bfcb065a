//! External programs for tests (chromium, chromedriver, redis-server, nginx): found on PATH,
#![allow(dead_code)]
//! started on free loopback ports, stopped by PID. Missing → the test skips with a loud
//! message, except under CI or `GATEHOUSE_REQUIRE_EXTERNAL=1`, where it fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[allow(clippy::disallowed_methods)]
fn required() -> bool {
    std::env::var("GATEHOUSE_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The program's path, or `None` after printing why the test is skipped.
pub fn find(program: &str, candidates: &[&str]) -> Option<PathBuf> {
    let found = candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            let out = Command::new("which").arg(program).output().ok()?;
            let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
            (!path.is_empty()).then(|| PathBuf::from(path))
        });
    if found.is_none() {
        let msg = format!(
            "\n\n!!!! SKIPPED: `{program}` is not installed (apt-get install {program}); \
             this test needs it. Set GATEHOUSE_REQUIRE_EXTERNAL=1 to make this a failure.\n"
        );
        if required() {
            panic!("{msg}");
        }
        eprintln!("{msg}");
    }
    found
}

/// Says loudly that something a test needs is missing: a panic under CI, a skip otherwise.
pub fn missing(what: &str, why: &str) {
    let msg = format!(
        "\n\n!!!! SKIPPED: {why}: {what}. Set GATEHOUSE_REQUIRE_EXTERNAL=1 to make this a failure.\n"
    );
    if required() {
        panic!("{msg}");
    }
    eprintln!("{msg}");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A child process killed (by PID) when dropped; with [`Process::spawn_group`], its whole
/// process group.
pub struct Process {
    pub child: Child,
    pub port: u16,
    group: bool,
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.group {
            // The group's id is the child's PID: what it started (chromedriver's Chromium)
            // goes with it, even when a failed assertion skipped the polite shutdown.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub fn spawn(mut cmd: Command, port: u16) -> Process {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Process {
            child,
            port,
            group: false,
        }
    }

    /// Like [`Process::spawn`], in a process group of its own that is killed with it.
    pub fn spawn_group(mut cmd: Command, port: u16) -> Process {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let mut p = Process::spawn(cmd, port);
        p.group = true;
        p
    }

    /// Waits (bounded) until something accepts connections on the port.
    pub async fn wait_listening(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "nothing listens on 127.0.0.1:{} after {within:?}",
            self.port
        );
    }
}
