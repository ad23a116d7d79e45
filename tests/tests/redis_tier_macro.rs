//! `#[cached]` functions and the `Cache` API on a Redis-only cache (`Tier::Remote`), end to end on
//! a real `redis-server`: values go through cache-core's envelope into Redis and back, a second
//! manager (a second "process") reads what the first wrote, TTLs are Redis's own, invalidation
//! reaches Redis, and bytes another client left under a key are a miss, never a panic.
//!
//! One server serves the whole binary; each test builds its own managers on its own namespace.
//! Raw bytes are read and written with a minimal RESP client ([`raw`]), so the tests see exactly
//! what is stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_core::remote::envelope::{self, HEADER_LEN};
use cache_core::{CacheManager, EntryOptions, Policy, Resilience, Tier, cached};
use cache_redis::{RedisBackend, RedisConfig};
use serde::{Deserialize, Serialize};
use tests::RedisServer;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start_with_args(tests::NO_BULK_COMMANDS))
}

fn config(namespace: &str) -> RedisConfig {
    RedisConfig::standalone(server().url()).namespace(namespace)
}

/// A manager whose caches `users` and `posts` live in Redis only, under `namespace`. The
/// timeout is generous: these tests are about behaviour on a healthy server, and a loaded CI
/// machine must not turn a slow first connection into a miss (the fault tests use 50 ms).
fn manager(namespace: &str) -> CacheManager {
    CacheManager::builder()
        .remote(RedisBackend::new(config(namespace)))
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .cache("users", Policy::new().tier(Tier::Remote).ttl_secs(60))
        .cache("posts", Policy::new().tier(Tier::Remote).ttl_secs(60))
        .build()
}

/// The Redis key of a logical key (the layout is deterministic; building a backend connects
/// nothing).
fn redis_key(namespace: &str, cache: &str, key: &str) -> String {
    RedisBackend::new(config(namespace)).redis_key(cache, key)
}

fn remote_stats(m: &CacheManager, cache: &str) -> cache_core::RemoteStats {
    m.cache(cache)
        .stats()
        .remote
        .expect("a Redis-backed cache has remote stats")
}

/// Polls `f` until it returns true, or panics with `what` after `limit`.
async fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A minimal synchronous RESP2 client: byte-exact reads and writes of what the tier stores.
mod raw {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    #[derive(Debug, PartialEq)]
    pub(crate) enum Reply {
        Nil,
        Int(i64),
        Bulk(Vec<u8>),
        Status(String),
        Error(String),
        Array(Vec<Reply>),
    }

    pub(crate) fn command(args: &[&[u8]]) -> Reply {
        let port = super::server().port();
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        stream.write_all(&out).expect("write to redis");
        read(&mut BufReader::new(stream))
    }

    fn read(r: &mut impl BufRead) -> Reply {
        let mut line = String::new();
        r.read_line(&mut line).expect("read a reply line");
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Reply::Status(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(rest.parse().expect("integer reply")),
            "$" => {
                let len: i64 = rest.parse().expect("bulk length");
                if len < 0 {
                    return Reply::Nil;
                }
                let mut buf = vec![0; len as usize + 2];
                r.read_exact(&mut buf).expect("bulk body");
                buf.truncate(len as usize);
                Reply::Bulk(buf)
            }
            "*" => {
                let len: i64 = rest.parse().expect("array length");
                if len < 0 {
                    return Reply::Nil;
                }
                Reply::Array((0..len).map(|_| read(r)).collect())
            }
            other => panic!("unexpected RESP reply type {other:?}"),
        }
    }

    pub(crate) fn get(key: &str) -> Option<Vec<u8>> {
        match command(&[b"GET", key.as_bytes()]) {
            Reply::Bulk(b) => Some(b),
            Reply::Nil => None,
            other => panic!("GET {key}: {other:?}"),
        }
    }

    pub(crate) fn set(key: &str, value: &[u8]) {
        assert_eq!(
            command(&[b"SET", key.as_bytes(), value]),
            Reply::Status("OK".into())
        );
    }

    pub(crate) fn int(args: &[&str]) -> i64 {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        match command(&args) {
            Reply::Int(n) => n,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    pub(crate) fn exists(key: &str) -> bool {
        int(&["EXISTS", key]) == 1
    }

    pub(crate) fn pttl(key: &str) -> i64 {
        int(&["PTTL", key])
    }
}

// --- rich values ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Address {
    street: String,
    city: String,
    zip: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Role {
    Admin,
    Member { since: u32, teams: Vec<u16> },
    Guest(String),
    Pair(i8, Option<bool>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Account {
    id: u64,
    name: String,
    address: Address,
    roles: Vec<Role>,
    prefs: BTreeMap<String, String>,
    scores: HashMap<u32, f64>,
    manager: Option<Box<Account>>,
    last_login: Option<u64>,
    check: Result<u32, String>,
    failed: Result<u32, String>,
    bytes: Vec<u8>,
    pair: (u8, String),
    unit: (),
}

fn account(id: u64) -> Account {
    let boss = Account {
        id: 1,
        name: "Boss".into(),
        address: Address {
            street: "1 Main St".into(),
            city: "Springfield".into(),
            zip: None,
        },
        roles: vec![Role::Admin],
        prefs: BTreeMap::new(),
        scores: HashMap::new(),
        manager: None,
        last_login: None,
        check: Ok(0),
        failed: Err(String::new()),
        bytes: Vec::new(),
        pair: (0, String::new()),
        unit: (),
    };
    Account {
        id,
        name: format!("Ada #{id} — ünïcödé ✓"),
        address: Address {
            street: "12 Analytical Row".into(),
            city: "London".into(),
            zip: Some("N1 9GU".into()),
        },
        roles: vec![
            Role::Member {
                since: 1843,
                teams: vec![1, 2, 65535],
            },
            Role::Guest("lab".into()),
            Role::Pair(-3, Some(true)),
            Role::Pair(i8::MIN, None),
        ],
        prefs: [("theme", "dark"), ("lang", "en")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        scores: [(1, 0.5), (2, -1e300), (3, f64::MAX)].into_iter().collect(),
        manager: Some(Box::new(boss)),
        last_login: Some(u64::MAX),
        check: Ok(id as u32),
        failed: Err("no such thing".into()),
        bytes: vec![0, 0xCA, 0xC5, 255],
        pair: (7, "seven".into()),
        unit: (),
    }
}

static ACCOUNT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "account:{id}")]
async fn load_account(id: u64) -> Account {
    ACCOUNT_RUNS.fetch_add(1, SeqCst);
    account(id)
}

static ROLE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "role:{n}")]
async fn load_role(n: u8) -> Role {
    ROLE_RUNS.fetch_add(1, SeqCst);
    match n {
        0 => Role::Admin,
        1 => Role::Member {
            since: 7,
            teams: vec![],
        },
        2 => Role::Guest(String::new()),
        _ => Role::Pair(n as i8, None),
    }
}

static MAP_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "map:{n}")]
async fn load_map(n: u32) -> BTreeMap<String, Vec<Option<i64>>> {
    MAP_RUNS.fetch_add(1, SeqCst);
    (0..n)
        .map(|i| {
            (
                format!("k{i}"),
                vec![Some(i64::from(i)), None, Some(-i64::from(i))],
            )
        })
        .collect()
}

static FIND_RUNS: AtomicUsize = AtomicUsize::new(0);

/// `Some` is cached (the `Account` inside it), `None` is not.
#[cached(cache = "users", key = "find:{id}")]
async fn find_account(id: u64) -> Option<Account> {
    FIND_RUNS.fetch_add(1, SeqCst);
    id.is_multiple_of(2).then(|| account(id))
}

static LOAD_RUNS: AtomicUsize = AtomicUsize::new(0);

/// `Ok` is cached (the `Address`), `Err` is not.
#[cached(cache = "users", key = "address:{id}")]
async fn load_address(id: u64) -> Result<Address, String> {
    LOAD_RUNS.fetch_add(1, SeqCst);
    if id == 0 {
        return Err("no address 0".into());
    }
    Ok(Address {
        street: format!("{id} Byte Lane"),
        city: "Cambridge".into(),
        zip: None,
    })
}

#[tokio::test]
async fn rich_values_round_trip_through_redis() {
    const NS: &str = "macro-rich";
    let first = manager(NS);
    let second = manager(NS);
    let roles = [0u8, 1, 2, 3];

    first
        .scope(async {
            assert_eq!(load_account(42).await, account(42));
            for &n in &roles {
                load_role(n).await;
            }
            assert_eq!(load_map(5).await.len(), 5);
            assert_eq!(find_account(2).await, Some(account(2)));
            assert_eq!(find_account(3).await, None);
            assert_eq!(load_address(7).await.unwrap().street, "7 Byte Lane");
            assert!(load_address(0).await.is_err());
        })
        .await;
    assert_eq!(ACCOUNT_RUNS.load(SeqCst), 1);
    assert_eq!(ROLE_RUNS.load(SeqCst), 4);
    assert_eq!((FIND_RUNS.load(SeqCst), LOAD_RUNS.load(SeqCst)), (2, 2));

    // Stored in Redis under the cache's prefix; `None` and `Err` were not stored.
    for key in ["account:42", "role:3", "map:5", "find:2", "address:7"] {
        assert!(raw::exists(&redis_key(NS, "users", key)), "{key} in Redis");
    }
    for key in ["find:3", "address:0"] {
        assert!(
            !raw::exists(&redis_key(NS, "users", key)),
            "{key} not stored"
        );
    }

    // A second manager (another process, in effect) decodes every value without a body run.
    second
        .scope(async {
            assert_eq!(load_account(42).await, account(42));
            assert_eq!(load_role(0).await, Role::Admin);
            assert_eq!(
                load_role(1).await,
                Role::Member {
                    since: 7,
                    teams: vec![]
                }
            );
            assert_eq!(load_role(2).await, Role::Guest(String::new()));
            assert_eq!(load_role(3).await, Role::Pair(3, None));
            assert_eq!(load_map(5).await, {
                let mut m = BTreeMap::new();
                for i in 0..5i64 {
                    m.insert(format!("k{i}"), vec![Some(i), None, Some(-i)]);
                }
                m
            });
            assert_eq!(find_account(2).await, Some(account(2)));
            assert_eq!(
                load_address(7).await,
                Ok(Address {
                    street: "7 Byte Lane".into(),
                    city: "Cambridge".into(),
                    zip: None,
                })
            );
            // Uncached outcomes run again.
            assert_eq!(find_account(3).await, None);
            assert!(load_address(0).await.is_err());
        })
        .await;
    assert_eq!(ACCOUNT_RUNS.load(SeqCst), 1);
    assert_eq!(ROLE_RUNS.load(SeqCst), 4);
    assert_eq!(MAP_RUNS.load(SeqCst), 1);
    assert_eq!((FIND_RUNS.load(SeqCst), LOAD_RUNS.load(SeqCst)), (3, 3));
    let stats = remote_stats(&second, "users");
    assert_eq!(stats.hits, 8, "{stats:?}");
    assert_eq!(stats.misses, 2, "find:3 and address:0: {stats:?}");
    assert_eq!((stats.errors, stats.decode_errors), (0, 0), "{stats:?}");
    // A Redis-only cache keeps nothing in memory.
    assert_eq!(second.cache("users").len(), 0);
}

static BIG_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "report:{lines}")]
async fn report(lines: usize) -> Vec<String> {
    BIG_RUNS.fetch_add(1, SeqCst);
    (0..lines)
        .map(|i| format!("line {i} of the quarterly report: all systems nominal"))
        .collect()
}

#[tokio::test]
async fn large_values_are_stored_compressed() {
    const NS: &str = "macro-large";
    let m = manager(NS);
    let value = m.scope(report(200)).await;
    let small = m.scope(report(1)).await;
    let plain_len = rmp_len(&value);
    assert!(
        plain_len > 8 * 1024,
        "the value is large: {plain_len} bytes"
    );

    let bytes = raw::get(&redis_key(NS, "users", "report:200")).expect("stored");
    assert_eq!(&bytes[..3], &[0xCA, 0xC5, envelope::VERSION]);
    assert_eq!(bytes[3] & 1, 1, "flag bit 0: LZ4-compressed");
    assert!(
        bytes.len() < plain_len / 2,
        "{} bytes stored for {plain_len} bytes of MessagePack",
        bytes.len()
    );
    let (decoded, _) =
        envelope::decode::<Vec<String>>("report:200", &bytes, envelope::unix_ms_now()).unwrap();
    assert_eq!(decoded, value);

    // A small value is stored as it is.
    let bytes = raw::get(&redis_key(NS, "users", "report:1")).expect("stored");
    assert_eq!(bytes[3], 0, "not compressed");
    assert_eq!(bytes.len(), HEADER_LEN + rmp_len(&small));

    // And the large one reads back through the function.
    let again = manager(NS).scope(report(200)).await;
    assert_eq!(again, value);
    assert_eq!(BIG_RUNS.load(SeqCst), 2);
}

/// The size of `v` as named MessagePack, measured by re-encoding it through the envelope with
/// compression off.
fn rmp_len<T: Serialize>(v: &T) -> usize {
    let meta = envelope::Meta {
        expires_at_unix_ms: None,
        recompute_ms: 0,
    };
    envelope::encode("k", v, meta, usize::MAX).unwrap().len() - HEADER_LEN
}

// --- sharing, TTL, namespaces ---------------------------------------------------------------

static SHARED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "shared:{id}")]
async fn shared_profile(id: u64) -> Address {
    SHARED_RUNS.fetch_add(1, SeqCst);
    Address {
        street: format!("{id} Shared Way"),
        city: "Anywhere".into(),
        zip: Some(id.to_string()),
    }
}

#[tokio::test]
async fn a_second_process_reads_what_the_first_wrote() {
    const NS: &str = "macro-second";
    let a = manager(NS);
    let b = manager(NS);
    let from_a = a.scope(shared_profile(1)).await;
    assert_eq!(SHARED_RUNS.load(SeqCst), 1);
    let from_b = b.scope(shared_profile(1)).await;
    assert_eq!(from_a, from_b);
    assert_eq!(SHARED_RUNS.load(SeqCst), 1, "b's body did not run");
    let sb = remote_stats(&b, "users");
    assert_eq!((sb.hits, sb.misses), (1, 0), "{sb:?}");
    let sa = remote_stats(&a, "users");
    assert_eq!((sa.hits, sa.misses), (0, 1), "{sa:?}");
    assert!(sb.mean_latency_us > 0, "round trips are timed: {sb:?}");

    // b writes a key a has not seen; a reads it.
    b.scope(shared_profile(2)).await;
    a.scope(shared_profile(2)).await;
    assert_eq!(SHARED_RUNS.load(SeqCst), 2);
    // An invalidation by one is seen by the other at once: the entry lived only in Redis.
    assert!(a.invalidate_key("users", "shared:2").await);
    b.scope(shared_profile(2)).await;
    assert_eq!(SHARED_RUNS.load(SeqCst), 3);
}

static TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "short:{id}", ttl = "400ms")]
async fn short_lived(id: u64) -> u64 {
    TTL_RUNS.fetch_add(1, SeqCst);
    id * 10
}

static POLICY_TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "policy-ttl:{id}")]
async fn policy_ttl(id: u64) -> u64 {
    POLICY_TTL_RUNS.fetch_add(1, SeqCst);
    id
}

#[tokio::test]
async fn entries_expire_in_redis_itself() {
    const NS: &str = "macro-ttl";
    let m = manager(NS);
    let key = redis_key(NS, "users", "short:1");
    assert_eq!(m.scope(short_lived(1)).await, 10);
    let pttl = raw::pttl(&key);
    assert!(
        (1..=400).contains(&pttl),
        "SET .. PX from the function's ttl: {pttl}"
    );
    assert_eq!(m.scope(short_lived(1)).await, 10);
    assert_eq!(TTL_RUNS.load(SeqCst), 1, "a hit before expiry");

    m.scope(policy_ttl(1)).await;
    let pttl = raw::pttl(&redis_key(NS, "users", "policy-ttl:1"));
    assert!(
        (59_000..=60_000).contains(&pttl),
        "the policy's ttl: {pttl}"
    );

    // Redis drops the key by itself (no instance reads it meanwhile)...
    eventually(Duration::from_secs(5), "Redis expires the key", || {
        !raw::exists(&key)
    })
    .await;
    // ...and the next call runs the body and stores it again.
    assert_eq!(m.scope(short_lived(1)).await, 10);
    assert_eq!(TTL_RUNS.load(SeqCst), 2);
    assert!(raw::pttl(&key) > 0);
}

static ISO_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "iso:{id}", tags = ["iso"])]
async fn isolated(id: u64) -> String {
    ISO_RUNS.fetch_add(1, SeqCst);
    format!("value {id}")
}

#[tokio::test]
async fn namespaces_are_isolated() {
    let a = manager("macro-iso-a");
    let b = manager("macro-iso-b");
    a.scope(isolated(1)).await;
    b.scope(isolated(1)).await;
    assert_eq!(ISO_RUNS.load(SeqCst), 2, "b does not see a's entry");
    let key_a = redis_key("macro-iso-a", "users", "iso:1");
    let key_b = redis_key("macro-iso-b", "users", "iso:1");
    assert_ne!(key_a, key_b);
    assert!(raw::exists(&key_a) && raw::exists(&key_b));

    // Tag, pattern and cache invalidations in a leave b alone.
    a.invalidate_tag("iso").await;
    assert!(!raw::exists(&key_a));
    assert!(raw::exists(&key_b));
    a.scope(isolated(1)).await;
    a.invalidate_pattern("users", "iso:*").await;
    assert!(!raw::exists(&key_a));
    a.scope(isolated(1)).await;
    a.invalidate_cache("users").await;
    assert!(!raw::exists(&key_a));
    a.scope(isolated(2)).await;
    a.invalidate_all().await;
    assert!(!raw::exists(&redis_key("macro-iso-a", "users", "iso:2")));
    assert!(raw::exists(&key_b));
    b.scope(isolated(1)).await;
    assert_eq!(ISO_RUNS.load(SeqCst), 5);
}

// --- invalidation ---------------------------------------------------------------------------

static MEMBER_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "member:{id}", tags = ["team:{team}", "members"])]
async fn member(id: u64, team: u64) -> String {
    MEMBER_RUNS.fetch_add(1, SeqCst);
    format!("member {id} of team {team}")
}

static POST_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "posts", key = "post:{id}", tags = ["team:{team}"])]
async fn post(id: u64, team: u64) -> String {
    POST_RUNS.fetch_add(1, SeqCst);
    format!("post {id} of team {team}")
}

#[tokio::test]
async fn tag_invalidation_removes_the_redis_entries() {
    const NS: &str = "macro-tags";
    let m = manager(NS);
    let calls = || async {
        member(1, 7).await;
        member(2, 7).await;
        member(3, 8).await;
        post(1, 7).await;
        post(2, 8).await;
    };
    m.scope(calls()).await;
    assert_eq!((MEMBER_RUNS.load(SeqCst), POST_RUNS.load(SeqCst)), (3, 2));
    let key = |cache: &str, k: &str| redis_key(NS, cache, k);
    let tag_record = RedisBackend::new(config(NS)).tag_key("team:7");
    assert_eq!(
        raw::int(&["ZCARD", &tag_record]),
        3,
        "a tag record names its entries"
    );

    m.invalidate_tag("team:7").await;
    assert!(!raw::exists(&key("users", "member:1")));
    assert!(!raw::exists(&key("users", "member:2")));
    assert!(!raw::exists(&key("posts", "post:1")), "in every cache");
    assert!(raw::exists(&key("users", "member:3")));
    assert!(raw::exists(&key("posts", "post:2")));
    assert!(!raw::exists(&tag_record));

    // Another manager (another process) sees the invalidation: the entries are gone from Redis.
    manager(NS).scope(calls()).await;
    assert_eq!((MEMBER_RUNS.load(SeqCst), POST_RUNS.load(SeqCst)), (5, 3));

    m.invalidate_tag("members").await;
    for id in 1..=3 {
        assert!(!raw::exists(&key("users", &format!("member:{id}"))));
    }
    assert!(raw::exists(&key("posts", "post:2")));
    // Through the named function form as well.
    assert_eq!(
        cache_core::invalidate_tag("team:8").await,
        0,
        "no memory entries"
    );
    m.scope(async { cache_core::invalidate_tag("team:8").await })
        .await;
    assert!(!raw::exists(&key("posts", "post:2")));
}

static SEARCH_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "search:{q}")]
async fn search(q: &str) -> Vec<String> {
    SEARCH_RUNS.fetch_add(1, SeqCst);
    vec![format!("result for {q}")]
}

#[tokio::test]
async fn pattern_invalidation_removes_the_redis_entries() {
    const NS: &str = "macro-pattern";
    let m = manager(NS);
    let queries = ["rust", "redis", "go", "r*", "rust:async"];
    m.scope(async {
        for q in queries {
            search(q).await;
        }
    })
    .await;
    assert_eq!(SEARCH_RUNS.load(SeqCst), 5);
    let key = |q: &str| {
        let k = format!("search:{}", cache_core::escape_key_part(q));
        redis_key(NS, "users", &k)
    };
    for q in queries {
        assert!(raw::exists(&key(q)), "{q}");
    }
    // The argument `*` was escaped in its key, so it matches only as the glob's `*` does.
    assert!(key("r*").ends_with("search:r\\*"), "{}", key("r*"));

    m.invalidate_pattern("users", "search:r?st").await;
    assert!(!raw::exists(&key("rust")));
    assert!(raw::exists(&key("rust:async")));
    assert!(raw::exists(&key("redis")));

    m.invalidate_pattern("users", "search:r*").await;
    for q in ["redis", "r*", "rust:async"] {
        assert!(!raw::exists(&key(q)), "{q} removed");
    }
    assert!(raw::exists(&key("go")), "go stays");

    m.scope(async {
        for q in queries {
            search(q).await;
        }
    })
    .await;
    assert_eq!(SEARCH_RUNS.load(SeqCst), 9, "four reran, go was a hit");
    m.invalidate_cache("users").await;
    for q in queries {
        assert!(!raw::exists(&key(q)), "{q} cleared");
    }
}

// --- sync functions -------------------------------------------------------------------------

static SYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "sync:{id}", tags = ["sync"])]
fn sync_account(id: u64) -> Account {
    SYNC_RUNS.fetch_add(1, SeqCst);
    account(id)
}

#[test]
fn a_sync_function_uses_redis_on_the_io_runtime() {
    const NS: &str = "macro-sync";
    let a = manager(NS);
    // No tokio runtime here: the remote I/O runs on cache-core's own.
    assert_eq!(a.scope_sync(|| sync_account(5)), account(5));
    assert_eq!(SYNC_RUNS.load(SeqCst), 1);
    assert!(raw::exists(&redis_key(NS, "users", "sync:5")));
    assert_eq!(a.scope_sync(|| sync_account(5)), account(5));
    assert_eq!(SYNC_RUNS.load(SeqCst), 1, "a Redis hit");

    // From inside a current-thread runtime (where `Handle::block_on` would panic).
    let b = manager(NS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(b.scope_sync(|| sync_account(5)), account(5));
        assert_eq!(SYNC_RUNS.load(SeqCst), 1, "b read a's entry");
        b.invalidate_tag("sync").await;
    });
    assert!(!raw::exists(&redis_key(NS, "users", "sync:5")));
    assert_eq!(a.scope_sync(|| sync_account(5)), account(5));
    assert_eq!(SYNC_RUNS.load(SeqCst), 2);

    // The invalidation hooks of sync functions reach Redis from a plain thread...
    let sync_key = cache_core::__private::KeyBuf::from_key("sync:5");
    a.scope_sync(|| cache_core::__private::invalidate_key_blocking("users", &sync_key));
    assert!(!raw::exists(&redis_key(NS, "users", "sync:5")));
    a.scope_sync(|| sync_account(5));
    // ...and from inside a runtime.
    rt.block_on(async {
        let tag = cache_core::__private::KeyBuf::from_key("sync");
        a.scope_sync(|| cache_core::__private::invalidate_tag_blocking(&tag));
    });
    assert!(!raw::exists(&redis_key(NS, "users", "sync:5")));
    assert_eq!(SYNC_RUNS.load(SeqCst), 3);
    let stats = remote_stats(&b, "users");
    assert_eq!(stats.hits, 1, "{stats:?}");
}

static RELEASE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "release:{id}")]
fn sync_release(id: u64) -> Account {
    RELEASE_RUNS.fetch_add(1, SeqCst);
    account(id)
}

/// A sync function takes its distributed lock on cache-core's I/O runtime and drops it on the
/// caller's thread. The release went to the runtime current there: in a `#[tokio::test]` (a
/// current-thread runtime, blocked by the sync call) it ran only at the test's next `.await`, so
/// the next miss of the key from sync code found the lock held and waited out its TTL.
#[tokio::test]
async fn a_sync_functions_lock_is_released_while_its_callers_runtime_is_blocked() {
    const NS: &str = "macro-sync-release";
    let lock_ttl = Duration::from_secs(3);
    let m = CacheManager::builder()
        .remote(RedisBackend::new(config(NS)))
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .cache(
            "users",
            Policy::new()
                .tier(Tier::Remote)
                .ttl_secs(60)
                .lock_ttl(lock_ttl),
        )
        .build();
    let lock = RedisBackend::new(config(NS)).lock_key("users", "release:1");
    let key = cache_core::__private::KeyBuf::from_key("release:1");
    // All in sync code: this thread does not return to the test's runtime until the end.
    m.scope_sync(|| {
        assert_eq!(sync_release(1), account(1));
        let deadline = Instant::now() + lock_ttl / 3;
        while raw::exists(&lock) {
            assert!(
                Instant::now() < deadline,
                "the lock was not released within {:?} of the call",
                lock_ttl / 3
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        cache_core::__private::invalidate_key_blocking("users", &key);
        assert_eq!(sync_release(1), account(1));
    });
    assert_eq!(RELEASE_RUNS.load(SeqCst), 2);
    let stats = remote_stats(&m, "users");
    assert_eq!(
        (stats.lock_acquired, stats.lock_waits),
        (2, 0),
        "the second miss took the lock without waiting: {stats:?}"
    );
}

// --- values that cannot go to Redis ---------------------------------------------------------

/// Not serde-serializable: `#[cached]` accepts it (it needs only `Clone`), but it cannot travel.
#[derive(Clone, Debug, PartialEq)]
struct Opaque {
    id: u64,
    handle: std::sync::Arc<()>,
}

static OPAQUE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "opaque:{id}")]
async fn opaque(id: u64) -> Opaque {
    OPAQUE_RUNS.fetch_add(1, SeqCst);
    Opaque {
        id,
        handle: std::sync::Arc::new(()),
    }
}

/// What we observe: on a Redis-only cache a value type without serde is cached in the memory
/// tier of the process that computed it (as on a memory cache: one body run per key per
/// process), never written to Redis, and invalidations still remove it. A warning is logged
/// once. Answers are always correct.
#[tokio::test]
async fn values_without_serde_stay_in_memory() {
    const NS: &str = "macro-opaque";
    let a = manager(NS);
    let b = manager(NS);
    a.scope(async {
        assert_eq!(opaque(1).await.id, 1);
        assert_eq!(opaque(1).await.id, 1);
        assert_eq!(opaque(2).await.id, 2);
    })
    .await;
    assert_eq!(OPAQUE_RUNS.load(SeqCst), 2, "cached in a's memory");
    assert!(!raw::exists(&redis_key(NS, "users", "opaque:1")));
    let stats = remote_stats(&a, "users");
    assert_eq!(
        (stats.hits, stats.misses, stats.errors),
        (0, 0, 0),
        "Redis was not asked: {stats:?}"
    );

    // Another process has its own copy.
    b.scope(async {
        assert_eq!(opaque(1).await.id, 1);
        assert_eq!(opaque(1).await.id, 1);
    })
    .await;
    assert_eq!(OPAQUE_RUNS.load(SeqCst), 3);

    // Invalidation reaches the memory copy.
    assert!(a.invalidate_key("users", "opaque:1").await);
    a.scope(opaque(1)).await;
    assert_eq!(OPAQUE_RUNS.load(SeqCst), 4);
    a.invalidate_cache("users").await;
    a.scope(opaque(2)).await;
    assert_eq!(OPAQUE_RUNS.load(SeqCst), 5);
}

// --- bytes the tier did not write -----------------------------------------------------------

static NAME_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "item:{id}")]
async fn item_name(id: u64) -> String {
    NAME_RUNS.fetch_add(1, SeqCst);
    format!("item {id}")
}

/// Shares `item_name`'s key template with another return type: a deploy that changed the type.
#[cached(cache = "users", key = "item:{id}")]
async fn item_number(id: u64) -> u64 {
    id
}

#[tokio::test]
async fn bytes_another_client_wrote_are_a_miss_then_overwritten() {
    const NS: &str = "macro-garbage";
    let m = manager(NS);
    let key = |id: u64| redis_key(NS, "users", &format!("item:{id}"));

    // A valid envelope to mangle.
    m.scope(item_name(100)).await;
    let valid = raw::get(&key(100)).unwrap();
    let mut hostile = envelope::encode(
        "item:6",
        &"x".repeat(4096),
        envelope::Meta {
            expires_at_unix_ms: None,
            recompute_ms: 0,
        },
        16,
    )
    .unwrap();
    assert_eq!(hostile[3], 1, "compressed");
    hostile[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut bad_lz4 = valid.clone();
    bad_lz4[3] = 1;

    let junk: Vec<(u64, Vec<u8>, &str)> = vec![
        (
            1,
            b"not an envelope at all, but long enough".to_vec(),
            "foreign",
        ),
        (2, valid[..10].to_vec(), "truncated header"),
        (3, valid[..valid.len() - 2].to_vec(), "truncated payload"),
        (4, valid.clone(), "another key's envelope"),
        (5, Vec::new(), "empty"),
        (6, hostile, "absurd decompressed size"),
        (7, bad_lz4, "compressed flag on plain bytes"),
        (8, vec![0xff; 64], "binary noise"),
    ];
    for (id, bytes, what) in &junk {
        raw::set(&key(*id), bytes);
        let before = NAME_RUNS.load(SeqCst);
        assert_eq!(
            m.scope(item_name(*id)).await,
            format!("item {id}"),
            "{what}"
        );
        assert_eq!(NAME_RUNS.load(SeqCst), before + 1, "{what}: the body ran");
        let stored = raw::get(&key(*id)).unwrap_or_else(|| panic!("{what}: rewritten"));
        let (v, _) =
            envelope::decode::<String>(&format!("item:{id}"), &stored, envelope::unix_ms_now())
                .unwrap_or_else(|e| panic!("{what}: the new value decodes: {e}"));
        assert_eq!(v, format!("item {id}"));
    }
    let stats = remote_stats(&m, "users");
    // The empty value reads as no value at all (a plain miss), the others as undecodable.
    let undecodable = junk.len() as u64 - 1;
    assert_eq!(stats.decode_errors, undecodable, "{stats:?}");

    // A value written as another type (a deploy changed the return type).
    m.scope(item_number(9)).await;
    assert_eq!(m.scope(item_name(9)).await, "item 9");
    assert_eq!(remote_stats(&m, "users").decode_errors, undecodable + 1);
    // ...and the other way round: the String is not read as a u64.
    assert_eq!(m.scope(item_number(9)).await, 9);
    assert_eq!(remote_stats(&m, "users").decode_errors, undecodable + 2);

    // A value whose logical expiry passed while Redis still holds it (copied without a TTL, or
    // clocks apart): a miss, replaced.
    let expired = envelope::encode(
        "item:10",
        &"stale".to_owned(),
        envelope::Meta {
            expires_at_unix_ms: Some(1),
            recompute_ms: 0,
        },
        usize::MAX,
    )
    .unwrap();
    raw::set(&key(10), &expired);
    assert_eq!(m.scope(item_name(10)).await, "item 10");
    let stored = raw::get(&key(10)).unwrap();
    assert!(envelope::decode::<String>("item:10", &stored, envelope::unix_ms_now()).is_ok());
}

/// A value already in Redis is deleted when it does not decode, even if the body then fails.
static FALLIBLE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "fallible:{id}")]
async fn fallible(id: u64) -> Result<String, String> {
    FALLIBLE_RUNS.fetch_add(1, SeqCst);
    Err(format!("cannot load {id}"))
}

#[tokio::test]
async fn an_undecodable_value_is_deleted_even_when_nothing_replaces_it() {
    const NS: &str = "macro-garbage-err";
    let m = manager(NS);
    let key = redis_key(NS, "users", "fallible:1");
    raw::set(&key, b"garbage garbage garbage garbage garbage");
    assert!(m.scope(fallible(1)).await.is_err());
    assert!(!raw::exists(&key), "deleted");
    assert_eq!(remote_stats(&m, "users").decode_errors, 1);
    assert!(m.scope(fallible(1)).await.is_err());
    assert_eq!(FALLIBLE_RUNS.load(SeqCst), 2);
    assert_eq!(remote_stats(&m, "users").decode_errors, 1, "logged once");
}

// --- the Cache API --------------------------------------------------------------------------

#[tokio::test]
async fn the_cache_api_reads_and_writes_redis() {
    const NS: &str = "api";
    let a = manager(NS);
    let b = manager(NS);
    let (ua, ub) = (a.cache("users"), b.cache("users"));
    assert_eq!(ua.tier(), Tier::Remote);

    ua.set("user:1", account(1)).await;
    assert_eq!(ub.get::<Account>("user:1").await, Some(account(1)));
    assert_eq!(
        ub.get::<String>("user:1").await,
        None,
        "another type: a miss"
    );
    assert_eq!(
        ub.get::<Account>("user:1").await,
        None,
        "the undecodable value was deleted"
    );
    ua.set("user:1", account(1)).await;

    ua.set_with(
        "session:x",
        "token".to_owned(),
        EntryOptions::new()
            .ttl(Duration::from_millis(300))
            .tag("user:1"),
    )
    .await;
    let pttl = raw::pttl(&redis_key(NS, "users", "session:x"));
    assert!((1..=300).contains(&pttl), "{pttl}");
    assert_eq!(
        ub.get::<String>("session:x").await.as_deref(),
        Some("token")
    );
    b.invalidate_tag("user:1").await;
    assert_eq!(ua.get::<String>("session:x").await, None);
    assert_eq!(
        ua.get::<Account>("user:1").await,
        Some(account(1)),
        "untagged"
    );

    assert!(ub.delete("user:1").await);
    assert!(!ua.delete("user:1").await);
    assert!(!raw::exists(&redis_key(NS, "users", "user:1")));

    let runs = AtomicUsize::new(0);
    let init = || async {
        runs.fetch_add(1, SeqCst);
        account(2)
    };
    assert_eq!(ua.get_or_insert_with("user:2", init).await, account(2));
    assert_eq!(ub.get_or_insert_with("user:2", init).await, account(2));
    assert_eq!(runs.load(SeqCst), 1);

    let err: Result<u32, String> = ua
        .try_get_or_insert_with("n", || async { Err("nope".to_owned()) })
        .await;
    assert!(err.is_err());
    assert!(!raw::exists(&redis_key(NS, "users", "n")));
    let ok: Result<u32, String> = ub.try_get_or_insert_with("n", || async { Ok(3) }).await;
    assert_eq!(ok, Ok(3));
    assert_eq!(ua.get::<u32>("n").await, Some(3));

    // The blocking form, from a plain thread.
    let a2 = a.clone();
    std::thread::spawn(move || {
        let c = a2.cache("users");
        let c = c.blocking();
        assert_eq!(c.get::<u32>("n"), Some(3));
        c.set("blocking", 9u32);
        assert_eq!(c.get_or_insert_with("blocking", || 0u32), 9);
        assert!(c.delete("blocking"));
    })
    .join()
    .unwrap();
    assert_eq!(ub.get::<u32>("blocking").await, None);
    // And from inside this (current-thread) runtime, which blocks while it waits: the remote
    // work runs on cache-core's I/O runtime, not on the blocked one.
    let c = ua.blocking();
    c.set("in-runtime", 4u32);
    assert_eq!(c.get::<u32>("in-runtime"), Some(4));
    assert!(c.delete("in-runtime"));

    assert_eq!(ua.clear().await, 0, "nothing in memory");
    assert!(!raw::exists(&redis_key(NS, "users", "n")));
    let stats = remote_stats(&b, "users");
    assert_eq!((stats.errors, stats.timeouts), (0, 0), "{stats:?}");
}

// --- single flight and round trips ---------------------------------------------------------

static SLOW_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "slow:{id}")]
async fn slow(id: u64) -> Address {
    SLOW_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    Address {
        street: format!("{id} Slow Road"),
        city: "Patience".into(),
        zip: None,
    }
}

fn spawn_slow(m: &CacheManager, id: u64) -> tokio::task::JoinHandle<Address> {
    let m = m.clone();
    tokio::spawn(async move { m.scope(slow(id)).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_a_redis_only_cache_share_one_body_run() {
    const NS: &str = "macro-flight";
    let a = manager(NS);
    let tasks: Vec<_> = (0..10).map(|_| spawn_slow(&a, 1)).collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().street, "1 Slow Road");
    }
    assert_eq!(SLOW_RUNS.load(SeqCst), 1);
    assert_eq!(a.cache("users").stats().coalesced, 9);

    // Concurrent readers of a value already in Redis: every one gets it, no body runs, and
    // those that joined the leader's flight did not read Redis themselves.
    let b = manager(NS);
    let tasks: Vec<_> = (0..10).map(|_| spawn_slow(&b, 1)).collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().street, "1 Slow Road");
    }
    assert_eq!(SLOW_RUNS.load(SeqCst), 1);
    let stats = b.cache("users").stats();
    let remote = stats.remote.clone().unwrap();
    assert_eq!(remote.hits + stats.coalesced, 10, "{stats:?}");
    assert_eq!(remote.misses, 0, "{stats:?}");
}

static SLOW_SYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "slow-sync:{id}")]
fn slow_sync(id: u64) -> String {
    SLOW_SYNC_RUNS.fetch_add(1, SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    format!("slow {id}")
}

#[test]
fn concurrent_sync_misses_on_a_redis_only_cache_share_one_body_run() {
    let m = manager("macro-flight-sync");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || m.scope_sync(|| slow_sync(3)))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), "slow 3");
    }
    assert_eq!(SLOW_SYNC_RUNS.load(SeqCst), 1);
    assert_eq!(m.cache("users").stats().coalesced, 7);
}

static COUNTED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "counted:{id}", tags = ["counted"])]
async fn counted(id: u64) -> Account {
    COUNTED_RUNS.fetch_add(1, SeqCst);
    account(id)
}

/// `INFO commandstats` as `(command, calls)` pairs, without the test's own `CONFIG`, `INFO` and
/// `EXISTS` (its polling) and without the commands the tag script runs inside Redis.
fn command_calls(server: &RedisServer) -> Vec<(String, u64)> {
    const NOT_SENT: &[&str] = &[
        "config|resetstat",
        "info",
        "exists",
        "time",
        "zremrangebyscore",
        "zscore",
        "zadd",
        "zrange",
        "pexpireat",
        "persist",
    ];
    let mut calls: Vec<(String, u64)> = server
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .filter(|(name, _)| !NOT_SENT.contains(&name.as_str()))
        .collect();
    calls.sort();
    calls
}

#[tokio::test]
async fn a_hit_is_one_get_and_a_miss_adds_one_pipelined_write() {
    // Its own server: the command counts are server-wide.
    let server = RedisServer::start();
    let m = CacheManager::builder()
        .remote(RedisBackend::new(
            RedisConfig::standalone(server.url()).namespace("commands"),
        ))
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        // Without distributed single flight; what it adds is counted in the next test.
        .cache(
            "users",
            Policy::new()
                .tier(Tier::Remote)
                .ttl_secs(60)
                .distributed_lock(false),
        )
        .build();
    // Connect first, so the handshake is not counted.
    m.scope(counted(0)).await;
    server.cli(&["CONFIG", "RESETSTAT"]);

    // A miss: a read (GETRANGE, bounded by max_value_bytes), then SET and the tag script (sent
    // as one pipeline).
    m.scope(counted(1)).await;
    let owned = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(c, n)| (c.to_string(), *n)).collect()
    };
    assert_eq!(
        command_calls(&server),
        owned(&[("eval", 1), ("getrange", 1), ("set", 1)])
    );

    server.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..10 {
        m.scope(counted(1)).await;
    }
    assert_eq!(COUNTED_RUNS.load(SeqCst), 2);
    assert_eq!(
        command_calls(&server),
        owned(&[("getrange", 10)]),
        "ten hits: ten reads and nothing else"
    );
}

static LOCKED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "locked", key = "locked:{id}")]
async fn locked(id: u64) -> u64 {
    LOCKED_RUNS.fetch_add(1, SeqCst);
    id
}

#[tokio::test]
async fn a_miss_under_the_distributed_lock_adds_three_commands() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::standalone(server.url()).namespace("locked"));
    let first_lock_key = backend.lock_key("locked", "locked:0");
    let lock_key = backend.lock_key("locked", "locked:1");
    let m = CacheManager::builder()
        .remote(backend)
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .cache("locked", Policy::new().tier(Tier::Remote).ttl_secs(60))
        .build();
    m.scope(locked(0)).await;
    // The release of the first call's lock is sent after it returns: let it land before counting.
    let first_lock = m
        .cache("locked")
        .stats()
        .remote
        .map_or(0, |r| r.lock_acquired);
    assert_eq!(first_lock, 1);
    eventually(Duration::from_secs(5), "the first lock is released", || {
        server.cli(&["EXISTS", &first_lock_key]) == "0"
    })
    .await;
    server.cli(&["CONFIG", "RESETSTAT"]);

    // GETRANGE (miss), SET NX (the lock), GETRANGE (the value, read again under the lock), SET
    // (the value), then the compare-and-delete script releasing the lock, sent once the call returned.
    assert_eq!(m.scope(locked(1)).await, 1);
    eventually(Duration::from_secs(5), "the lock is released", || {
        server.cli(&["EXISTS", &lock_key]) == "0"
    })
    .await;
    let owned = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(c, n)| (c.to_string(), *n)).collect()
    };
    assert_eq!(
        command_calls(&server),
        owned(&[
            ("del", 1),
            ("eval", 1),
            ("get", 1),
            ("getrange", 2),
            ("set", 2)
        ]),
        "`del` and the `get` run inside the release script; values are read with `getrange`"
    );
    assert_eq!(LOCKED_RUNS.load(SeqCst), 2);
}
