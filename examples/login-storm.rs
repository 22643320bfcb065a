//! The load benchmark's login storm: `RATE` JSON logins per second against a Gatehouse on
//! 127.0.0.1 for `SECONDS` seconds, over keep-alive connections (no process per login, so the
//! storm itself costs the load generator's core little). Prints how many logins succeeded,
//! how many of those finished while the storm lasted, how many were refused (503: the hashing
//! queue was full) and the login latency, so a benchmark can tell "proxied requests stayed
//! fast" from "logins silently starved".
//!
//! `cargo run --release --example login-storm -- 127.0.0.1:8080 50 10 alice alice-demo-password`

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, rate, seconds, user, password] = args.as_slice() else {
        return Err("usage: login-storm ADDR RATE SECONDS USER PASSWORD".into());
    };
    let rate: u32 = rate.parse()?;
    let seconds: u64 = seconds.parse()?;
    if rate == 0 {
        return Err("RATE must be at least 1".into());
    }
    let uri: hyper::Uri = format!("http://{addr}/.gatehouse/login").parse()?;
    let body = Bytes::from(serde_json::to_vec(
        &serde_json::json!({ "username": user, "password": password }),
    )?);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut logins = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tick.tick().await;
        let req = hyper::Request::post(uri.clone())
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))?;
        let client = client.clone();
        logins.spawn(async move {
            let start = Instant::now();
            let status = match client.request(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let _ = resp.into_body().collect().await;
                    status
                }
                Err(_) => 0,
            };
            (status, start.elapsed(), Instant::now() <= end)
        });
    }

    let (mut ok, mut ok_in_time, mut refused, mut failed) = (0u32, 0u32, 0u32, 0u32);
    let mut latencies = Vec::new();
    while let Some(done) = logins.join_next().await {
        let Ok((status, took, in_time)) = done else {
            failed += 1;
            continue;
        };
        match status {
            200 => {
                ok += 1;
                ok_in_time += u32::from(in_time);
                latencies.push(took);
            }
            503 => refused += 1,
            _ => failed += 1,
        }
    }
    latencies.sort();
    let pct = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "logins sent {} ok {ok} (of which {ok_in_time} within the {seconds} s) refused {refused} \
         failed {failed}; login p50 {:.1} ms p99 {:.1} ms",
        ok + refused + failed,
        pct(50),
        pct(99)
    );
    Ok(())
}
