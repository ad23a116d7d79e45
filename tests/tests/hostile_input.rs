//! Hostile input on a real Redis: arguments that could collide or inject (1 MiB strings, glob
//! and key-syntax characters, newlines, NUL, invalid UTF-8 bytes), and values in Redis the cache
//! did not write in a form it can read (another Redis type, a huge string). The promises:
//! distinct argument values never share an entry, in memory or in Redis; an argument never acts
//! as a wildcard; keys sent to Redis stay within `max_key_bytes` (longer ones are hashed); a
//! value that cannot be read is a miss, answered by the body, without a panic and without
//! holding its bytes.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_core::{
    BreakerState, CacheManager, Policy, RemoteStats, Resilience, Tier, cached, invalidates,
};
use cache_redis::{RedisBackend, RedisConfig};
use tests::RedisServer;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start_with_args(tests::NO_BULK_COMMANDS))
}

fn backend(namespace: &str) -> RedisBackend {
    RedisBackend::new(RedisConfig::standalone(server().url()).namespace(namespace))
}

/// A manager whose `hostile` cache is in `tier`, on `namespace`. The timeout is generous: these
/// tests are about what is read, not about a slow machine.
fn manager(namespace: &str, tier: Tier) -> CacheManager {
    CacheManager::builder()
        .remote(backend(namespace))
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .cache("hostile", Policy::new().tier(tier).ttl_secs(60))
        .build()
}

fn remote(m: &CacheManager) -> RemoteStats {
    m.cache("hostile").stats().remote.expect("remote stats")
}

/// The value keys of the `hostile` cache of a namespace in Redis (not its single-flight locks,
/// which live under `{namespace}:lock:` and are released just after a call returns).
fn redis_keys(namespace: &str) -> Vec<String> {
    server()
        .cli(&["--scan", "--pattern", &format!("{namespace}:hostile:*")])
        .lines()
        .map(str::to_owned)
        .collect()
}

static TEXT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "hostile", key = "text:{s}")]
async fn by_text(s: String) -> String {
    TEXT_RUNS.fetch_add(1, SeqCst);
    format!("{} bytes ending {:?}", s.len(), s.chars().last())
}

static BYTES_RUNS: AtomicUsize = AtomicUsize::new(0);

/// No template: the default key hashes the arguments' MessagePack form, bytes as bytes.
#[cached(cache = "hostile")]
async fn by_bytes(b: Vec<u8>) -> String {
    BYTES_RUNS.fetch_add(1, SeqCst);
    format!("{b:?}")
}

fn hostile_strings() -> Vec<String> {
    let mb = "a".repeat(1 << 20);
    let mut v: Vec<String> = [
        "", "*", "?", "[", "]", "[a-z]", ":", "a:b", "a\\:b", "{", "}", "{x}", "\\", "\\*", "^",
        "\n", "\r\n", "\0", "a\0b", "\u{7f}", "é", "\u{fffd}", "user:*", "*:*",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push(mb.clone());
    v.push(format!("{mb}x"));
    v.push(format!("{mb}y"));
    v.push(format!("x{mb}"));
    v
}

#[tokio::test]
async fn distinct_hostile_arguments_never_share_an_entry_in_memory_or_redis() {
    const NS: &str = "hostile-args";
    let a = manager(NS, Tier::Hybrid);
    tests::backplane_subscribed(&a).await;
    let strings = hostile_strings();
    for s in &strings {
        let expected = format!("{} bytes ending {:?}", s.len(), s.chars().last());
        assert_eq!(a.scope(by_text(s.clone())).await, expected, "{:.40?}", s);
        assert_eq!(a.scope(by_text(s.clone())).await, expected, "a memory hit");
    }
    assert_eq!(
        TEXT_RUNS.load(SeqCst),
        strings.len(),
        "one body run per distinct argument"
    );

    let bytes: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff],
        vec![0xfe],
        vec![0xff, 0],
        vec![0xc3],
        vec![0xc3, 0xa9],       // "é" in UTF-8
        vec![0xef, 0xbf, 0xbd], // U+FFFD, what lossy conversion would turn the others into
        b"*".to_vec(),
        vec![0xff; 1 << 20],
    ];
    for b in &bytes {
        assert_eq!(a.scope(by_bytes(b.clone())).await, format!("{b:?}"));
    }
    assert_eq!(BYTES_RUNS.load(SeqCst), bytes.len());

    // A second instance with an empty memory tier reads every value back from Redis, each under
    // its own key: no two arguments met in Redis either.
    let b = manager(NS, Tier::Hybrid);
    tests::backplane_subscribed(&b).await;
    for s in &strings {
        let expected = format!("{} bytes ending {:?}", s.len(), s.chars().last());
        assert_eq!(b.scope(by_text(s.clone())).await, expected, "{:.40?}", s);
    }
    for v in &bytes {
        assert_eq!(b.scope(by_bytes(v.clone())).await, format!("{v:?}"));
    }
    assert_eq!(TEXT_RUNS.load(SeqCst), strings.len(), "all read from Redis");
    assert_eq!(BYTES_RUNS.load(SeqCst), bytes.len(), "all read from Redis");
    assert_eq!(remote(&b).hits as usize, strings.len() + bytes.len());

    // Every key in Redis is within the limit (512 bytes by default, plus the prefix): the 1 MiB
    // and control-character keys were hashed.
    let keys = redis_keys(NS);
    assert_eq!(keys.len(), strings.len() + bytes.len(), "{keys:?}");
    let longest = keys.iter().map(String::len).max().unwrap_or(0);
    println!(
        "{} hostile arguments, {} Redis keys, the longest {longest} bytes",
        strings.len() + bytes.len(),
        keys.len()
    );
    assert!(
        longest <= format!("{NS}:hostile:").len() + 512,
        "a {longest}-byte key"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("{NS}:hostile:h:")))
    );
}

static POST_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "hostile", key = "user:{id}:posts:{page}")]
async fn posts(id: String, page: u32) -> String {
    POST_RUNS.fetch_add(1, SeqCst);
    format!("{id}/{page}")
}

#[invalidates(cache = "hostile", pattern = "user:{id}:posts:*")]
async fn forget_posts(id: String) {
    let _ = id;
}

#[tokio::test]
async fn an_argument_in_a_pattern_matches_only_itself_in_redis() {
    const NS: &str = "hostile-glob";
    let m = manager(NS, Tier::Remote);
    let ids = [
        "1", "12", "*", "1*", "?", "[1]", "[^1]", "\\", "\\*", "a:b", "{x}", "\n", "^",
    ];
    for id in ids {
        for page in [1, 2] {
            m.scope(posts(id.to_owned(), page)).await;
        }
    }
    assert_eq!(redis_keys(NS).len(), ids.len() * 2);
    for (i, id) in ids
        .iter()
        .enumerate()
        .filter(|(_, id)| !id.chars().all(char::is_alphanumeric))
    {
        m.scope(forget_posts((*id).to_owned())).await;
        let left = redis_keys(NS).len();
        // Only this id's two entries went; every other id's are still in Redis.
        let removed_so_far = 2 * ids[..=i]
            .iter()
            .filter(|id| !id.chars().all(char::is_alphanumeric))
            .count();
        assert_eq!(left, ids.len() * 2 - removed_so_far, "forgetting {id:?}");
    }
    let runs = POST_RUNS.load(SeqCst);
    for id in ["1", "12"] {
        assert_eq!(m.scope(posts(id.to_owned(), 1)).await, format!("{id}/1"));
    }
    assert_eq!(
        POST_RUNS.load(SeqCst),
        runs,
        "users 1 and 12 were never touched"
    );
}

static VALUE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "hostile", key = "value:{id}")]
async fn value(id: u64) -> String {
    VALUE_RUNS.fetch_add(1, SeqCst);
    format!("value {id}")
}

static FAILING_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Same keys as `value`, never stored (an `Err` is not cached): foreign values stay in place.
#[cached(cache = "hostile", key = "value:{id}")]
async fn failing(id: u64) -> Result<String, String> {
    FAILING_RUNS.fetch_add(1, SeqCst);
    Err(format!("no value {id}"))
}

#[tokio::test]
async fn values_of_another_redis_type_or_huge_are_misses() {
    const NS: &str = "hostile-values";
    let m = manager(NS, Tier::Remote);
    let key = |id: u64| backend(NS).redis_key("hostile", &format!("value:{id}"));
    let cli = |args: &[&str]| server().cli(args);
    cli(&["RPUSH", &key(1), "a", "b"]);
    cli(&["HSET", &key(2), "f", "v"]);
    cli(&["SADD", &key(3), "m"]);
    cli(&["ZADD", &key(4), "1", "m"]);
    cli(&["XADD", &key(5), "*", "f", "v"]);
    // 64 MiB of zero bytes: not an envelope, and far over the 8 MiB value limit.
    cli(&["SETRANGE", &key(6), &((64 << 20) - 1).to_string(), "x"]);

    // Each unreadable value twice in a row (more than the breaker's threshold of five
    // consecutive failures, were they counted as failures), the body answering every time; then
    // read again after the body's value replaced them.
    for id in 1..=6 {
        for _ in 0..2 {
            let started = Instant::now();
            assert_eq!(m.scope(failing(id)).await, Err(format!("no value {id}")));
            println!("value {id}: answered in {:?}", started.elapsed());
        }
    }
    assert_eq!(FAILING_RUNS.load(SeqCst), 12);
    let s = remote(&m);
    println!("after reading values of other types and a huge one: {s:?}");
    assert_eq!(
        s.breaker,
        Some(BreakerState::Closed),
        "unreadable values are the data's fault, not the connection's: {s:?}"
    );
    assert_eq!(s.errors, 0, "{s:?}");
    // Two calls, each reading it twice: on the miss, and again under the distributed lock.
    assert_eq!(s.too_large, 4, "the 64 MiB value: {s:?}");
    for id in 1..=6 {
        assert_eq!(m.scope(value(id)).await, format!("value {id}"));
        assert_eq!(m.scope(value(id)).await, format!("value {id}"));
    }
    assert_eq!(
        VALUE_RUNS.load(SeqCst),
        6,
        "the body's values replaced the foreign ones"
    );
}
