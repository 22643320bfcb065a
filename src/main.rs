//! The `gatehouse` command: run | check | hash-password | gen-key | health.
//! Exit codes: 0 ok, 1 invalid config or input, 2 usage error.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a proxied request makes ~17 short-lived allocations,
/// and glibc spent ~4.7k instructions per request on them (callgrind).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use gatehouse::authenticate::{keygen, tokens, users};
use gatehouse::config::{self, Config};

const EXAMPLES: &str = "\
Examples:
  gatehouse gen-key --out keys/signing.pem     a signing key (EdDSA), readable only by you
  gatehouse hash-password                      hash a password for gateway.yaml (no echo)
  gatehouse check                              validate ./gateway.yaml and print a summary
  gatehouse                                    serve ./gateway.yaml (same as `gatehouse run`)
  gatehouse health                             exit 0 when the running gateway answers /healthz

Reload: edit gateway.yaml (or the users file, or the TLS files) and the running gateway
reloads within a second; `kill -HUP <pid>` reloads at once. A bad edit is logged and the
previous config keeps serving. SIGTERM or Ctrl-C drains open requests, then exits.";

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "A reverse-proxy authentication gateway: a login in front of web apps that have none",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(clap::Args, Default)]
struct ConfigArg {
    /// Config file (default ./gateway.yaml, or $GATEHOUSE_CONFIG).
    #[arg(long, env = "GATEHOUSE_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run(ConfigArg),
    /// Validate the config and print a summary.
    Check(ConfigArg),
    /// Read a password from stdin and print its argon2id PHC hash.
    HashPassword,
    /// Write a new PEM private key for signing tokens (to stdout, or --out FILE).
    GenKey {
        /// The algorithm: EdDSA (the default), ES256 or RS256.
        #[arg(long, default_value = "EdDSA", value_parser = ["EdDSA", "ES256", "RS256"])]
        alg: String,
        /// Write the key to this file (mode 0600; an existing file is never overwritten).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Exit 0 when the running gateway's health check answers 200 (for container health
    /// checks); 1 otherwise.
    Health {
        /// The health URL (default: the plain listener of the config, at
        /// {auth_prefix}/healthz, on loopback when it listens on every address).
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    gatehouse::install_crypto_providers();
    let config_path = |sub: ConfigArg| {
        sub.config
            .or(cli.config.config.clone())
            .unwrap_or_else(|| PathBuf::from("gateway.yaml"))
    };
    let result = match cli.command.unwrap_or(Command::Run(ConfigArg::default())) {
        Command::Run(c) => run(&config_path(c)),
        Command::Check(c) => check(&config_path(c)),
        Command::HashPassword => hash_password(),
        Command::GenKey { alg, out } => gen_key(&alg, out.as_deref()),
        Command::Health { url, config } => health(url, &config_path(config)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(config::load(path, config::process_env)?)
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let c = load(path)?;
    // Each identity provider's discovery document and keys, fetched now (SPEC §11).
    if let Some(oidc) = c.oidc.as_ref().filter(|o| !o.providers.is_empty()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let problems = runtime.block_on(gatehouse::oidc::Oidc::new().check(oidc));
        if !problems.is_empty() {
            anyhow::bail!(
                "{}: an identity provider cannot be used:\n  {}",
                path.display(),
                problems.join("\n  ")
            );
        }
    }
    println!("{}: configuration is valid", path.display());
    if let Some(addr) = c.listen {
        println!("listener: http://{addr}");
    }
    if let Some(tls) = &c.tls {
        println!("listener: https://{} (h2, http/1.1)", tls.listen);
    }
    if let Some(admin) = &c.admin {
        println!("admin: http://{}", admin.listen);
    }
    println!("auth prefix: {}", c.auth_prefix);
    println!(
        "express lane: {}",
        if c.express_lane { "on" } else { "off" }
    );
    let shown = gatehouse::config::units::format_seconds;
    println!(
        "tokens: {:?}, access {}, refresh {}, session {}",
        c.tokens.keys.algorithm(),
        shown(c.tokens.access_ttl),
        shown(c.tokens.refresh_ttl),
        shown(c.tokens.session_max_age)
    );
    println!("users: {}", c.users.len());
    if let Some(oidc) = &c.oidc {
        println!(
            "password login: {}",
            if oidc.password_login { "on" } else { "off" }
        );
        for p in &oidc.providers {
            println!(
                "  oidc provider {} ({}): {} — redirect URI {}, back-channel logout {}",
                p.id, p.name, p.issuer, p.redirect_uri, p.backchannel_uri
            );
        }
    }
    println!("routes: {}", c.routes.routes().len());
    for r in c.routes.routes() {
        let host = match &r.host {
            gatehouse::route::HostPattern::Any => "*".to_string(),
            gatehouse::route::HostPattern::Exact(h) => h.clone(),
            gatehouse::route::HostPattern::Wildcard(s) => format!("*{s}"),
        };
        let count =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let tls = match &r.upstream.tls {
            Some(tls) => format!(", TLS: {}", tls.summary),
            None => String::new(),
        };
        println!(
            "  {} {}{} -> {}://{}{} ({}, {}{tls})",
            r.name,
            host,
            r.prefix,
            r.upstream.scheme,
            r.upstream.authority,
            r.upstream.base_path,
            count(r.public.len(), "public prefix", "public prefixes"),
            count(r.rules.len(), "rule", "rules")
        );
    }
    for w in &c.warnings {
        println!("warning: {w}");
    }
    Ok(())
}

/// Transparent huge pages off for this process. The first touch of a fresh 2 MiB page means
/// zeroing it all at once, and on the request thread that stalled every request in flight:
/// perf during the load benchmark's login storm showed the runtime thread in `clear_page_erms`
/// under huge-page faults (its heap growing while logins waited for argon2), and proxied p99
/// went from 1.1 ms to 20-60 ms in the first storm of each process; with huge pages off it was
/// 1.7 ms in every storm, idle throughput unchanged. mimalloc is built not to ask for them
/// (`no_thp`); this also covers hosts whose THP setting is `always`. The same advice Redis
/// gives for the same reason. Failure (an old kernel) is only logged.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(error) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!(%error, "could not turn transparent huge pages off");
    }
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let config = load(path)?;
    gatehouse::telemetry::init(&config.logging);
    gatehouse::telemetry::log_warnings(&config.warnings);
    no_huge_pages();
    let listen = config.listen;
    let tls_listen = config.tls.as_ref().map(|t| t.listen);
    let admin = config.admin.as_ref().map(|a| a.listen);
    // One CPU (a container limited to one, or `taskset -c N`): a current-thread runtime does
    // the same work without the work-stealing scheduler's cross-thread bookkeeping.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let runtime = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    let path = path.to_path_buf();
    runtime.block_on(async move {
        let bind = |addr: std::net::SocketAddr, what: &'static str| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({what}): {e}"))
        };
        let listener = match listen {
            Some(addr) => Some(bind(addr, "http").await?),
            None => None,
        };
        let tls_listener = match tls_listen {
            Some(addr) => Some(bind(addr, "https").await?),
            None => None,
        };
        let admin_listener = match admin {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (admin): {e}"))?,
            ),
            None => None,
        };
        let runtime = if one_cpu { "current_thread" } else { "multi_thread" };
        tracing::info!(http = ?listen, https = ?tls_listen, admin = ?admin, routes = config.routes.routes().len(), runtime, "gatehouse listening");
        let gw = gatehouse::Gateway::new(config)?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let watcher = tokio::spawn(gatehouse::reload::watch(gw.clone(), path, config::process_env));
        let admin_task = admin_listener.map(|l| {
            tokio::spawn(gatehouse::serve_admin(l, gw.clone(), stopped(stop_rx.clone())))
        });
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let tls_task = tls_listener.map(|l| {
            tokio::spawn(gatehouse::serve_tls(l, gw.clone(), stopped(stop_rx.clone())))
        });
        match listener {
            Some(l) => gatehouse::serve(l, gw, stopped(stop_rx)).await?,
            None => stopped(stop_rx).await,
        }
        if let Some(task) = tls_task {
            let _ = task.await;
        }
        watcher.abort();
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        tracing::info!("gatehouse stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: no new connections; draining open requests");
}

fn hash_password() -> anyhow::Result<()> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            anyhow::bail!("the passwords do not match");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        anyhow::bail!("the password is empty");
    }
    let hash = users::hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    println!("{hash}");
    Ok(())
}

fn gen_key(alg: &str, out: Option<&std::path::Path>) -> anyhow::Result<()> {
    let alg = tokens::parse_algorithm(alg)?;
    let pem = keygen::generate(alg)?;
    match out {
        None => std::io::stdout().write_all(pem.as_bytes())?,
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                        "{} already exists; a key is never overwritten (remove it first, or choose another name)",
                        path.display()
                    ),
                    _ => anyhow::anyhow!("cannot create {}: {e}", path.display()),
                })?;
            file.write_all(pem.as_bytes())?;
            eprintln!("wrote a new {alg:?} key to {} (mode 600)", path.display());
        }
    }
    Ok(())
}

/// `gatehouse health`: one `GET` with a 5 s limit; 200 is healthy.
fn health(url: Option<String>, path: &std::path::Path) -> anyhow::Result<()> {
    let url = match url {
        Some(url) => url,
        None => {
            let c = load(path)?;
            let Some(mut addr) = c.listen else {
                anyhow::bail!(
                    "{} has no plain server.listen to ask; pass --url (e.g. the admin listener's http://127.0.0.1:9090/healthz)",
                    path.display()
                );
            };
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            format!("http://{addr}{}/healthz", c.auth_prefix)
        }
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("{url} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        anyhow::bail!("{url}: only http:// URLs are checked (use the plain or the admin listener)");
    }
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("{url} has no host"))?
        .clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime.block_on(async {
        let ask = async {
            let port = authority.port_u16().unwrap_or(80);
            let stream = tokio::net::TcpStream::connect((authority.host(), port)).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let req = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
                .header(http::header::HOST, authority.as_str())
                .body(http_body_util::Empty::<bytes::Bytes>::new())?;
            anyhow::Ok(sender.send_request(req).await?.status())
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), ask)
            .await
            .map_err(|_| anyhow::anyhow!("{url} did not answer within 5 s"))?
            .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))
    })?;
    if status != http::StatusCode::OK {
        anyhow::bail!("{url} answered {status}");
    }
    println!("{url}: ok");
    Ok(())
}
