//! The demo server: the application of the design guides, on cache-core.
//!
//! `cargo run --release --example server` starts it on `127.0.0.1:3000` with the memory tier.
//! Environment:
//! - `PORT` (default 3000; 0 picks a free port, printed at start),
//! - `DB_LATENCY_MS` (default 20): added to every query, to act like a remote database,
//! - `DB_PATH`: an SQLite file to use (and seed if empty) instead of an in-memory database, so
//!   several server processes can share one,
//! - `REDIS_URL`: use the hybrid tier (memory + Redis) with the backplane.

mod db;
mod error;
mod model;
mod routes;
mod service;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cache_core::{CacheManager, Policy, Tier, Warmer};
use cache_redis::{RedisBackend, RedisConfig, redact};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let port: u16 = env_or("PORT", 3000);
    let latency = Duration::from_millis(env_or("DB_LATENCY_MS", 20));
    let db_path = std::env::var_os("DB_PATH").map(PathBuf::from);
    let redis_url = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());

    let db = match db::Db::open(db_path.as_deref(), latency) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("cannot open the database: {e}");
            std::process::exit(1);
        }
    };

    // Per-data-type policies, as in the design guides.
    let tier = if redis_url.is_some() {
        Tier::Hybrid
    } else {
        Tier::Memory
    };
    let mut builder = CacheManager::builder()
        .cache(
            "users",
            Policy::new().ttl_secs(1800).max_entries(10_000).tier(tier),
        )
        .cache(
            "videos",
            Policy::new().ttl_secs(3600).max_entries(50_000).tier(tier),
        )
        .cache(
            "search",
            Policy::new().ttl_secs(600).max_entries(5_000).tier(tier),
        )
        .cache(
            "static",
            Policy::new()
                .ttl(Duration::from_secs(7 * 86_400))
                .l1_ttl(Duration::from_secs(86_400))
                .max_entries(1_000)
                .tier(tier),
        );
    // Every template, loaded at start so the first page views are hits. `warm()` runs it after
    // the Redis backplane's first subscription, which clears the memory tier (waiting at most
    // 5 s, so a server whose Redis is down still starts, and serves through it).
    let templates_db = db.clone();
    builder = builder.warmer(Warmer::new("templates", move || {
        let db = templates_db.clone();
        async move { Ok::<_, std::convert::Infallible>(service::warm_templates(&db).await) }
    }));
    if let Some(url) = &redis_url {
        builder = builder.remote(RedisBackend::new(
            RedisConfig::standalone(url.clone()).namespace("demo"),
        ));
    }
    let caches = builder
        .install()
        .expect("the cache manager is installed once, first thing");

    let warmed: usize = caches.warm().await.iter().map(|r| r.loaded).sum();

    let listener =
        match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
                std::process::exit(1);
            }
        };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let tier_text = match &redis_url {
        Some(url) => format!("hybrid (memory + {})", redact(url)),
        None => "memory".to_owned(),
    };
    println!("listening on http://{addr}");
    println!(
        "cache tier: {tier_text}; database: {} with {} users, {} videos, {} templates ({warmed} warmed), {} ms per query",
        db_path
            .as_deref()
            .map_or("in memory".to_owned(), |p| p.display().to_string()),
        db::USERS,
        db::VIDEOS,
        db::TEMPLATES,
        latency.as_millis(),
    );

    let app = routes::router(routes::AppState { db, caches });
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
    {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
    println!("shut down cleanly");
}

/// Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
