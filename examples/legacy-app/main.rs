//! The example upstream on its own: `cargo run --example legacy-app [ADDR]`
//! (default 127.0.0.1:3000).

mod app;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("legacy app on http://{addr}");
    app::serve(listener).await;
    Ok(())
}
