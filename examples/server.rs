//! The project's main job. Until the axum demo server lands, this walks through what `#[cached]`
//! does: a slow "database" behind cached functions, misses then hits, and the stats table.
//!
//! Run it with `cargo run --release --example server`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::{CacheManager, Policy, cached};

static DB_QUERIES: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Debug)]
#[allow(dead_code)] // fields are read through Debug
struct User {
    id: u64,
    name: String,
}

/// Stands in for a database round trip.
async fn query_db<T>(value: T) -> T {
    DB_QUERIES.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(20)).await;
    value
}

#[cached(cache = "users", ttl = 1800, key = "user:{id}")]
async fn get_user(id: u64) -> Result<User, String> {
    if id == 0 {
        return Err("user 0 does not exist".into());
    }
    Ok(query_db(User {
        id,
        name: format!("user-{id}"),
    })
    .await)
}

#[cached(cache = "static", ttl = "24h")]
fn template(name: String) -> String {
    DB_QUERIES.fetch_add(1, Ordering::Relaxed);
    format!("<h1>{name}</h1>")
}

#[tokio::main]
async fn main() {
    CacheManager::builder()
        .cache("users", Policy::new().ttl_secs(1800).max_entries(10_000))
        .cache("static", Policy::new().max_entries(100))
        .install()
        .expect("the first thing main does");

    println!("cache-core demo: memory tier, caches `users` (ttl 30m) and `static` (ttl 24h)\n");
    for round in 1..=2 {
        let start = Instant::now();
        for id in 1..=5 {
            get_user(id).await.expect("users 1..=5 exist");
        }
        let _ = get_user(0).await; // errors are never cached
        template("home".into());
        println!(
            "round {round}: 5 users + 1 error + 1 template in {:>8.2?}, database queries so far: {}",
            start.elapsed(),
            DB_QUERIES.load(Ordering::Relaxed)
        );
    }

    println!(
        "\n{:<10} {:>6} {:>7} {:>8} {:>8} {:>9}",
        "cache", "hits", "misses", "inserts", "entries", "hit rate"
    );
    for s in CacheManager::global().stats() {
        println!(
            "{:<10} {:>6} {:>7} {:>8} {:>8} {:>8.1}%",
            s.name,
            s.hits,
            s.misses,
            s.inserts,
            s.entries,
            s.hit_rate() * 100.0
        );
    }
}
