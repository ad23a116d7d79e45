//! One application instance for the hybrid multi-process tests (`tests/tests/hybrid_*.rs`): a
//! [`CacheManager`] with a hybrid (memory + Redis) cache `items` on a given Redis and namespace,
//! driven by line commands on stdin, one reply line each on stdout.
//!
//! ```text
//! cache_instance --redis URL | --cluster URL,URL,..  --namespace NS  --db DIR
//!                [--ttl-ms N] [--l1-ttl-ms N] [--timeout-ms N]
//!                [--body-delay-ms N] [--lock-ttl-ms N] [--lock-wait-ms N] [--no-lock]
//! ```
//!
//! `--body-delay-ms` makes the body sleep that long before reading the database (a slow query);
//! the `--lock-*` options set the distributed single-flight policy (`Policy::lock_ttl`,
//! `lock_wait`, `distributed_lock(false)`).
//!
//! The "database" is the directory `DIR`: item `id`'s value is the content of `DIR/item-{id}`
//! (`v0` when there is no such file), so a test changes the data by writing a file, as an
//! application would update a row, and then invalidates through one instance.
//!
//! Items are read through a `#[cached]` function with key `item:{id}` and tag `group:{group}`.
//! Once the backplane is subscribed the instance prints `ready`; then:
//!
//! | command | does | reply |
//! | --- | --- | --- |
//! | `get ID [GROUP]` | the cached function | `value=V ran=0/1 us=T` (`ran`: the body ran) |
//! | `burst ID N` | N concurrent tasks call the cached function (group ID) | `calls=N values=V:COUNT,.. ran=R us=T` |
//! | `sburst ID N` | N threads call its synchronous twin (same cache and key) | as `burst` |
//! | `peek ID` | `Cache::get` (memory, then Redis; never the body) | `value=V/- us=T` |
//! | `set ID VALUE [GROUP]` | `Cache::set_with` (an overwrite) | `ok us=T` |
//! | `del ID` | `invalidate_key("items", "item:ID")` | `ok removed=true/false us=T` |
//! | `tag GROUP` | `invalidate_tag("group:GROUP")` | `ok removed=N us=T` |
//! | `pattern GLOB` | `invalidate_pattern("items", GLOB)` | `ok removed=N us=T` |
//! | `clear` | `invalidate_cache("items")` | `ok removed=N us=T` |
//! | `all` | `invalidate_all()` | `ok removed=N us=T` |
//! | `stats` | the cache's counters | `l1_hits=.. l1_misses=.. l2_hits=.. l2_misses=.. l2_errors=.. entries=.. runs=.. lock_acquired=.. lock_waits=.. lock_wait_timeouts=..` |
//! | `bp` | the backplane's counters | `subscriptions=.. applied=.. overflowed=.. own=.. foreign=..` |
//! | `wait FIELD N MS` | waits until backplane counter `FIELD` ≥ N, for at most MS ms | `ok FIELD=.. us=T` / `timeout FIELD=..` |
//! | `quit` | exits | `bye` |
//!
//! A malformed command gets `error ...`; nothing here panics on input.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_core::remote::backplane::BackplaneStats;
use cache_core::{CacheManager, EntryOptions, Policy, Resilience, Tier, cached};
use cache_redis::{RedisBackend, RedisConfig};

/// How many times the cached function's body ran.
static RUNS: AtomicU64 = AtomicU64::new(0);
/// The "database" directory.
static DB: OnceLock<PathBuf> = OnceLock::new();
/// How long a body takes (`--body-delay-ms`).
static BODY_DELAY: OnceLock<Duration> = OnceLock::new();

const CACHE: &str = "items";

fn body_delay() -> Duration {
    BODY_DELAY.get().copied().unwrap_or_default()
}

#[cached(cache = "items", key = "item:{id}", tags = ["group:{group}"])]
async fn load(id: u64, group: u64) -> String {
    let _ = group;
    RUNS.fetch_add(1, Ordering::SeqCst);
    if !body_delay().is_zero() {
        tokio::time::sleep(body_delay()).await;
    }
    read_db(id)
}

/// `load` for synchronous callers: the same cache and key, so either may compute for the other.
#[cached(cache = "items", key = "item:{id}", tags = ["group:{group}"])]
fn load_sync(id: u64, group: u64) -> String {
    let _ = group;
    RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(body_delay());
    read_db(id)
}

fn read_db(id: u64) -> String {
    let path = DB
        .get()
        .map(|d| d.join(format!("item-{id}")))
        .unwrap_or_default();
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "v0".to_owned())
}

struct Args {
    config: RedisConfig,
    ttl: Duration,
    l1_ttl: Option<Duration>,
    timeout: Duration,
    lock_ttl: Option<Duration>,
    lock_wait: Option<Duration>,
    lock: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut redis = None;
    let mut namespace = None;
    let mut ttl = Duration::from_secs(60);
    let mut l1_ttl = None;
    let mut timeout = Duration::from_millis(500);
    let mut lock_ttl = None;
    let mut lock_wait = None;
    let mut lock = true;
    let mut args = std::env::args().skip(1);
    let ms = |v: Option<String>, what: &str| -> Result<Duration, String> {
        v.and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .ok_or_else(|| format!("{what} needs a number of milliseconds"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--redis" => {
                redis = Some(RedisConfig::standalone(
                    args.next().ok_or("--redis needs a URL")?,
                ))
            }
            "--cluster" => {
                let seeds = args.next().ok_or("--cluster needs URLs")?;
                redis = Some(RedisConfig::cluster(seeds.split(',').map(str::to_owned)));
            }
            "--namespace" => namespace = Some(args.next().ok_or("--namespace needs a name")?),
            "--db" => {
                let dir = args.next().ok_or("--db needs a directory")?;
                let _ = DB.set(PathBuf::from(dir));
            }
            "--ttl-ms" => ttl = ms(args.next(), "--ttl-ms")?,
            "--l1-ttl-ms" => l1_ttl = Some(ms(args.next(), "--l1-ttl-ms")?),
            "--timeout-ms" => timeout = ms(args.next(), "--timeout-ms")?,
            "--body-delay-ms" => {
                let _ = BODY_DELAY.set(ms(args.next(), "--body-delay-ms")?);
            }
            "--lock-ttl-ms" => lock_ttl = Some(ms(args.next(), "--lock-ttl-ms")?),
            "--lock-wait-ms" => lock_wait = Some(ms(args.next(), "--lock-wait-ms")?),
            "--no-lock" => lock = false,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mut config = redis.ok_or("--redis or --cluster is required")?;
    if let Some(ns) = namespace {
        config = config.namespace(ns);
    }
    Ok(Args {
        config,
        ttl,
        l1_ttl,
        timeout,
        lock_ttl,
        lock_wait,
        lock,
    })
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cache_instance: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cache_instance: no runtime: {e}");
            std::process::exit(1);
        }
    };
    let mut policy = Policy::new().tier(Tier::Hybrid).ttl(args.ttl);
    if let Some(l1) = args.l1_ttl {
        policy = policy.l1_ttl(l1);
    }
    if let Some(ttl) = args.lock_ttl {
        policy = policy.lock_ttl(ttl);
    }
    if let Some(wait) = args.lock_wait {
        policy = policy.lock_wait(wait);
    }
    policy = policy.distributed_lock(args.lock);
    let manager = {
        let _guard = runtime.enter();
        match CacheManager::builder()
            .remote(RedisBackend::new(args.config))
            .resilience(Resilience::new().timeout(args.timeout))
            .cache(CACHE, policy)
            .install()
        {
            Ok(m) => m,
            Err(e) => {
                eprintln!("cache_instance: {e}");
                std::process::exit(1);
            }
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // Ready once subscribed: an entry cached before that could miss an invalidation (the first
    // subscription clears memory, so it would be harmless, but the tests count exactly).
    let ready = wait_for(&manager, "subscriptions", 1, Duration::from_secs(10));
    let line = match ready {
        Ok(_) => "ready".to_owned(),
        Err(stats) => format!("error backplane not subscribed: {stats:?}"),
    };
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"quit") {
            let _ = writeln!(out, "bye");
            let _ = out.flush();
            break;
        }
        let reply = runtime.block_on(command(&manager, &words));
        let _ = writeln!(out, "{reply}");
        let _ = out.flush();
    }
}

fn number(words: &[&str], at: usize) -> Result<u64, String> {
    words
        .get(at)
        .ok_or_else(|| format!("argument {at} missing"))?
        .parse()
        .map_err(|_| format!("argument {at} is not a number"))
}

async fn command(manager: &CacheManager, words: &[&str]) -> String {
    match run(manager, words).await {
        Ok(reply) => reply,
        Err(e) => format!("error {e}"),
    }
}

async fn run(manager: &CacheManager, words: &[&str]) -> Result<String, String> {
    let started = Instant::now();
    let us = || started.elapsed().as_micros();
    let cache = manager.cache(CACHE);
    Ok(match words.first().copied().unwrap_or("") {
        "get" => {
            let id = number(words, 1)?;
            let group = number(words, 2).unwrap_or(0);
            let before = RUNS.load(Ordering::SeqCst);
            let value = load(id, group).await;
            let ran = RUNS.load(Ordering::SeqCst) - before;
            format!("value={value} ran={ran} us={}", us())
        }
        "burst" => {
            let id = number(words, 1)?;
            let n = number(words, 2)?;
            let before = RUNS.load(Ordering::SeqCst);
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..n {
                calls.spawn(load(id, id));
            }
            let mut values = BTreeMap::new();
            while let Some(joined) = calls.join_next().await {
                let value = joined.map_err(|e| format!("a call failed: {e}"))?;
                *values.entry(value).or_insert(0u64) += 1;
            }
            let ran = RUNS.load(Ordering::SeqCst) - before;
            format!("calls={n} values={} ran={ran} us={}", tally(&values), us())
        }
        "sburst" => {
            let id = number(words, 1)?;
            let n = number(words, 2)?;
            let before = RUNS.load(Ordering::SeqCst);
            // Plain threads, outside the runtime: how a synchronous application calls it.
            let values = tokio::task::spawn_blocking(move || {
                let threads: Vec<_> = (0..n)
                    .map(|_| std::thread::spawn(move || load_sync(id, id)))
                    .collect();
                let mut values = BTreeMap::new();
                for t in threads {
                    let value = t.join().map_err(|_| "a call panicked".to_owned())?;
                    *values.entry(value).or_insert(0u64) += 1;
                }
                Ok::<_, String>(values)
            })
            .await
            .map_err(|e| format!("the threads failed: {e}"))??;
            let ran = RUNS.load(Ordering::SeqCst) - before;
            format!("calls={n} values={} ran={ran} us={}", tally(&values), us())
        }
        "peek" => {
            let id = number(words, 1)?;
            let value = cache.get::<String>(&format!("item:{id}")).await;
            format!("value={} us={}", value.as_deref().unwrap_or("-"), us())
        }
        "set" => {
            let id = number(words, 1)?;
            let value = words.get(2).ok_or("set needs a value")?;
            let group = number(words, 3).unwrap_or(0);
            cache
                .set_with(
                    &format!("item:{id}"),
                    (*value).to_owned(),
                    EntryOptions::new().tag(format!("group:{group}")),
                )
                .await;
            format!("ok us={}", us())
        }
        "del" => {
            let id = number(words, 1)?;
            let removed = manager.invalidate_key(CACHE, &format!("item:{id}")).await;
            format!("ok removed={removed} us={}", us())
        }
        "tag" => {
            let group = number(words, 1)?;
            let removed = manager.invalidate_tag(&format!("group:{group}")).await;
            format!("ok removed={removed} us={}", us())
        }
        "pattern" => {
            let glob = words.get(1).ok_or("pattern needs a glob")?;
            let removed = manager.invalidate_pattern(CACHE, glob).await;
            format!("ok removed={removed} us={}", us())
        }
        "clear" => {
            let removed = manager.invalidate_cache(CACHE).await;
            format!("ok removed={removed} us={}", us())
        }
        "all" => {
            let removed = manager.invalidate_all().await;
            format!("ok removed={removed} us={}", us())
        }
        "stats" => {
            let s = cache.stats();
            let r = s.remote.unwrap_or_default();
            format!(
                "l1_hits={} l1_misses={} l2_hits={} l2_misses={} l2_errors={} entries={} runs={} lock_acquired={} lock_waits={} lock_wait_timeouts={}",
                s.hits,
                s.misses,
                r.hits,
                r.misses,
                r.errors,
                s.entries,
                RUNS.load(Ordering::SeqCst),
                r.lock_acquired,
                r.lock_waits,
                r.lock_wait_timeouts,
            )
        }
        "bp" => {
            let b = manager.backplane_stats().unwrap_or_default();
            format!(
                "subscriptions={} applied={} overflowed={} own={} foreign={}",
                b.subscriptions, b.applied, b.overflowed, b.own, b.foreign
            )
        }
        "wait" => {
            let field = *words.get(1).ok_or("wait needs a counter name")?;
            let at_least = number(words, 2)?;
            let limit = Duration::from_millis(number(words, 3)?);
            match wait_for(manager, field, at_least, limit) {
                Ok(n) => format!("ok {field}={n} us={}", us()),
                Err(stats) => format!("timeout {field}={}", counter(&stats, field)?),
            }
        }
        other => return Err(format!("unknown command {other:?}")),
    })
}

/// `value:count` pairs, comma-separated, in value order.
fn tally(values: &BTreeMap<String, u64>) -> String {
    let pairs: Vec<String> = values.iter().map(|(v, n)| format!("{v}:{n}")).collect();
    pairs.join(",")
}

fn counter(stats: &BackplaneStats, field: &str) -> Result<u64, String> {
    Ok(match field {
        "subscriptions" => stats.subscriptions,
        "applied" => stats.applied,
        "overflowed" => stats.overflowed,
        "own" => stats.own,
        "foreign" => stats.foreign,
        other => return Err(format!("no backplane counter {other:?}")),
    })
}

/// Polls a backplane counter until it reaches `at_least` (every 100 µs: the wait is what the
/// latency tests measure).
fn wait_for(
    manager: &CacheManager,
    field: &str,
    at_least: u64,
    limit: Duration,
) -> Result<u64, BackplaneStats> {
    let deadline = Instant::now() + limit;
    loop {
        let stats = manager.backplane_stats().unwrap_or_default();
        match counter(&stats, field) {
            Ok(n) if n >= at_least => return Ok(n),
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(100)),
            _ => return Err(stats),
        }
    }
}
