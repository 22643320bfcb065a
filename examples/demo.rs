//! `cargo run --release --example demo`: the bundled legacy app behind Gatehouse, configured
//! by `gateway.yaml`, on the in-memory store.

#[path = "legacy-app/app.rs"]
mod app;

use std::path::Path;

use gatehouse::config;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    gatehouse::install_crypto_providers();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.yaml");
    let config = config::load(&path, config::process_env)?;
    gatehouse::telemetry::init(&config.logging);
    gatehouse::telemetry::log_warnings(&config.warnings);
    let listen = config.listen.ok_or("gateway.yaml has no server.listen")?;
    let upstream = config
        .routes
        .routes()
        .first()
        .map(|r| r.upstream.authority.to_string())
        .ok_or("gateway.yaml has no route")?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let app_listener = tokio::net::TcpListener::bind(&upstream)
            .await
            .map_err(|e| format!("cannot start the example app on {upstream}: {e}"))?;
        tokio::spawn(app::serve(app_listener));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        println!();
        println!("  Gatehouse demo is running.");
        println!("  Open          http://{listen}/");
        println!("  Log in as     alice / alice-demo-password   (roles: admin, staff)");
        println!(
            "           or   bob / bob-demo-password       (role: staff; /admin is forbidden)"
        );
        println!(
            "  Example app   http://{upstream}/ (behind the gateway; it has no login of its own)"
        );
        println!("  Stop with Ctrl-C.");
        println!();
        let gw = gatehouse::Gateway::new(config)?;
        gatehouse::serve(listener, gw, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
