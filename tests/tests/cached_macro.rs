//! What `#[cached]` functions do at run time, counted: each test counts how often a body ran, and
//! runs under its own `CacheManager` so tests share no cache.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use cache_core::{CacheManager, Clock, cached};
use serde::Serialize;
use tokio::sync::{Notify, oneshot};

fn manager() -> CacheManager {
    CacheManager::builder().build()
}

/// Spawns `fut` scoped to `m` (a spawned task does not inherit the spawner's scope).
///
/// `CacheManager::scope`'s future borrows the manager (its `impl Future` captures `&self` under
/// edition 2024's capture rules), so the task owns a clone.
fn spawn_scoped<F>(m: &CacheManager, fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let m = m.clone();
    tokio::spawn(async move { m.scope(fut).await })
}

/// Waits (without sleeping) until `n` callers of cache `name` are waiting on another's flight.
async fn followers_waiting(m: &CacheManager, name: &str, n: u64) {
    let cache = m.cache(name);
    tokio::time::timeout(Duration::from_secs(10), async {
        while cache.stats().coalesced < n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("followers joined the flight");
}

// --- hits and misses -----------------------------------------------------------------------

static DOUBLE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
async fn double(x: u64) -> u64 {
    DOUBLE_RUNS.fetch_add(1, SeqCst);
    x * 2
}

#[tokio::test]
async fn a_miss_runs_the_body_once_and_a_hit_not_at_all() {
    let m = manager();
    m.scope(async {
        assert_eq!(double(21).await, 42);
        assert_eq!(DOUBLE_RUNS.load(SeqCst), 1);
        assert_eq!(double(21).await, 42);
        assert_eq!(double(21).await, 42);
        assert_eq!(DOUBLE_RUNS.load(SeqCst), 1);
    })
    .await;
    let stats = m.cache("default").stats();
    assert_eq!((stats.hits, stats.inserts), (2, 1));
}

static PAIR_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
async fn pair(a: u32, b: &str) -> String {
    PAIR_RUNS.fetch_add(1, SeqCst);
    format!("{a}/{b}")
}

#[tokio::test]
async fn different_arguments_are_different_entries() {
    let m = manager();
    m.scope(async {
        assert_eq!(pair(1, "x").await, "1/x");
        assert_eq!(pair(2, "x").await, "2/x");
        assert_eq!(pair(1, "y").await, "1/y");
        assert_eq!(PAIR_RUNS.load(SeqCst), 3);
        assert_eq!(pair(1, "x").await, "1/x");
        assert_eq!(pair(2, "x").await, "2/x");
        assert_eq!(PAIR_RUNS.load(SeqCst), 3);
    })
    .await;
    assert_eq!(m.cache("default").len(), 3);
}

// --- Result and Option ---------------------------------------------------------------------

static RESULT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "parse:{input}")]
async fn parse_number(input: &str) -> Result<u32, String> {
    RESULT_RUNS.fetch_add(1, SeqCst);
    input.parse().map_err(|e| format!("{e}"))
}

#[tokio::test]
async fn a_result_caches_only_ok() {
    let m = manager();
    m.scope(async {
        assert_eq!(parse_number("7").await, Ok(7));
        assert_eq!(parse_number("7").await, Ok(7));
        assert_eq!(RESULT_RUNS.load(SeqCst), 1);
        assert!(parse_number("x").await.is_err());
        assert!(parse_number("x").await.is_err());
        assert!(parse_number("x").await.is_err());
        assert_eq!(RESULT_RUNS.load(SeqCst), 4);
    })
    .await;
    // The `Ok` value itself is stored, under the template's key.
    assert_eq!(m.cache("default").get::<u32>("parse:7").await, Some(7));
    assert_eq!(m.cache("default").len(), 1);
}

static OPTION_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
async fn find_even(x: u32) -> Option<u32> {
    OPTION_RUNS.fetch_add(1, SeqCst);
    x.is_multiple_of(2).then_some(x)
}

#[tokio::test]
async fn an_option_caches_only_some() {
    let m = manager();
    m.scope(async {
        assert_eq!(find_even(2).await, Some(2));
        assert_eq!(find_even(2).await, Some(2));
        assert_eq!(OPTION_RUNS.load(SeqCst), 1);
        assert_eq!(find_even(3).await, None);
        assert_eq!(find_even(3).await, None);
        assert_eq!(OPTION_RUNS.load(SeqCst), 3);
    })
    .await;
}

static NONE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache_none = true)]
async fn find_even_or_none(x: u32) -> Option<u32> {
    NONE_RUNS.fetch_add(1, SeqCst);
    x.is_multiple_of(2).then_some(x)
}

#[tokio::test]
async fn cache_none_caches_none_too() {
    let m = manager();
    m.scope(async {
        assert_eq!(find_even_or_none(3).await, None);
        assert_eq!(find_even_or_none(3).await, None);
        assert_eq!(find_even_or_none(4).await, Some(4));
        assert_eq!(find_even_or_none(4).await, Some(4));
        assert_eq!(NONE_RUNS.load(SeqCst), 2);
    })
    .await;
}

// --- sync functions and methods ------------------------------------------------------------

static SYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "sync")]
fn square(x: u64) -> u64 {
    SYNC_RUNS.fetch_add(1, SeqCst);
    x * x
}

#[test]
fn a_sync_function_is_cached() {
    let m = manager();
    m.scope_sync(|| {
        assert_eq!(square(9), 81);
        assert_eq!(square(9), 81);
        assert_eq!(square(3), 9);
    });
    assert_eq!(SYNC_RUNS.load(SeqCst), 2);
    assert_eq!(m.cache("sync").len(), 2);
}

struct Repo {
    name: &'static str,
}

static METHOD_RUNS: AtomicUsize = AtomicUsize::new(0);
static TEMPLATE_METHOD_RUNS: AtomicUsize = AtomicUsize::new(0);

impl Repo {
    /// `self` is not in the default key: every `Repo` shares these entries.
    #[cached]
    async fn describe(&self, id: u32) -> String {
        METHOD_RUNS.fetch_add(1, SeqCst);
        format!("{} #{id}", self.name)
    }

    #[cached(key = "repo:{self.name}:{id}")]
    fn describe_own(&self, id: u32) -> String {
        TEMPLATE_METHOD_RUNS.fetch_add(1, SeqCst);
        format!("{} #{id}", self.name)
    }
}

#[tokio::test]
async fn self_is_left_out_of_the_default_key() {
    let (a, b) = (Repo { name: "a" }, Repo { name: "b" });
    let m = manager();
    m.scope(async {
        assert_eq!(a.describe(1).await, "a #1");
        assert_eq!(b.describe(1).await, "a #1");
        assert_eq!(b.describe(2).await, "b #2");
    })
    .await;
    assert_eq!(METHOD_RUNS.load(SeqCst), 2);
}

#[test]
fn a_method_key_can_read_self() {
    let (a, b) = (Repo { name: "a" }, Repo { name: "b" });
    let m = manager();
    m.scope_sync(|| {
        assert_eq!(a.describe_own(1), "a #1");
        assert_eq!(b.describe_own(1), "b #1");
        assert_eq!(a.describe_own(1), "a #1");
    });
    assert_eq!(TEMPLATE_METHOD_RUNS.load(SeqCst), 2);
    let cache = m.cache("default");
    assert_eq!(
        cache.blocking().get::<String>("repo:b:1").as_deref(),
        Some("b #1")
    );
}

// --- keys and tags -------------------------------------------------------------------------

#[derive(Serialize)]
struct Account {
    org: Org,
    email: String,
}

#[derive(Serialize)]
struct Org {
    id: u32,
}

#[cached(
    cache = "accounts",
    key = "org:{account.org.id}:{account.email:hash}:{kind:upper}"
)]
async fn account_label(account: &Account, kind: &str) -> String {
    format!("{} ({kind})", account.email)
}

#[tokio::test]
async fn a_key_template_reads_fields_and_applies_formatters() {
    let account = Account {
        org: Org { id: 5 },
        email: "ada@example.com".to_owned(),
    };
    let m = manager();
    m.scope(account_label(&account, "admin")).await;
    let mut hashed = cache_core::__private::KeyBuf::new();
    hashed.part_hashed(&"ada@example.com");
    let key = format!("org:5:{}:ADMIN", hashed.as_str());
    assert!(!key.contains("ada"), "the email is hashed, not stored");
    assert_eq!(
        m.cache("accounts").get::<String>(&key).await.as_deref(),
        Some("ada@example.com (admin)")
    );
}

static EXPR_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = format_args!("sq:{}", n % 10))]
async fn last_digit_squared(n: u32) -> u32 {
    EXPR_RUNS.fetch_add(1, SeqCst);
    (n % 10) * (n % 10)
}

#[tokio::test]
async fn an_expression_key_is_used_whole() {
    let m = manager();
    m.scope(async {
        assert_eq!(last_digit_squared(13).await, 9);
        // Same key (`sq:3`): served from the cache.
        assert_eq!(last_digit_squared(23).await, 9);
    })
    .await;
    assert_eq!(EXPR_RUNS.load(SeqCst), 1);
    assert_eq!(m.cache("default").get::<u32>("sq:3").await, Some(9));
}

#[cached(cache = "spelled", key = "user:{id}")]
async fn spelled_short(id: u64) -> u64 {
    id
}

#[cached(cache = "spelled", key = "accounts:{id}")]
fn spelled_long(id: i64) -> i64 {
    id
}

#[cached(cache = "spelled-text", key = "email:{email}")]
fn spelled_email(email: &str) -> usize {
    email.len()
}

#[cached(cache = "spelled-text", key = "{slug}")]
async fn spelled_slug(slug: String) -> usize {
    slug.len()
}

#[tokio::test]
async fn a_string_placeholder_is_the_escaped_string() {
    // `&str` and `String` values are escaped straight from the string (no `Display` call);
    // the key must be what `escape_key_part` makes of it, specials and all.
    let m = manager();
    let values = [
        "ada@example.com",
        "",
        "a:b",
        "*",
        "user:*",
        "[x]?\\",
        "\n",
        "日本",
    ];
    m.scope(async {
        for v in values {
            spelled_email(v);
            spelled_slug(v.to_owned()).await;
        }
    })
    .await;
    let cache = m.cache("spelled-text");
    for v in values {
        let escaped = cache_core::escape_key_part(v);
        assert_eq!(
            cache.get::<usize>(&format!("email:{escaped}")).await,
            Some(v.len()),
            "{v:?}"
        );
        assert_eq!(cache.get::<usize>(&escaped).await, Some(v.len()), "{v:?}");
    }
    assert_eq!(cache.len(), 2 * values.len());
}

#[cached(cache = "spelled", key = "org:{org}:user:{id}:v{version}")]
async fn spelled_parts(org: u8, id: u64, version: u32) -> String {
    format!("{org}/{id}/{version}")
}

#[tokio::test]
async fn a_template_key_is_the_string_it_spells() {
    // A short literal and the integer after it are rendered together (one store); a longer
    // literal, a signed value and several parts take the general path. Either way the key is
    // what the template spells, so the cache's string API finds the entry.
    let m = manager();
    let ids = [0, 7, 42, 999, 12_345_678, 99_999_999, 100_000_000, u64::MAX];
    m.scope(async {
        for id in ids {
            spelled_short(id).await;
            spelled_parts(3, id, 12).await;
        }
        for id in [-5, 0, 42, i64::MAX] {
            spelled_long(id);
        }
    })
    .await;
    let spelled = m.cache("spelled");
    for id in ids {
        assert_eq!(spelled.get::<u64>(&format!("user:{id}")).await, Some(id));
        assert_eq!(
            spelled
                .get::<String>(&format!("org:3:user:{id}:v12"))
                .await
                .as_deref(),
            Some(format!("3/{id}/12").as_str())
        );
    }
    for id in [-5, 0, 42, i64::MAX] {
        assert_eq!(
            spelled.get::<i64>(&format!("accounts:{id}")).await,
            Some(id)
        );
    }
    assert_eq!(spelled.len(), 2 * ids.len() + 4);
}

static BY_ID_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "by-id")]
async fn by_unsigned_id(id: u64) -> u64 {
    BY_ID_RUNS.fetch_add(1, SeqCst);
    id
}

#[cached(cache = "by-id")]
fn by_signed_id(id: i32) -> i64 {
    BY_ID_RUNS.fetch_add(1, SeqCst);
    i64::from(id)
}

/// `module::fn:` and the arguments' hash as the general (serde) path renders it.
fn serde_default_key<A: cache_core::__private::KeyArgsTuple>(fn_name: &str, args: &A) -> String {
    let mut k = cache_core::__private::KeyBuf::new();
    k.lit(module_path!());
    k.lit("::");
    k.lit(fn_name);
    k.lit(":");
    k.args_hash(args);
    k.as_str().to_owned()
}

#[tokio::test]
async fn a_default_key_of_one_integer_is_the_serde_form() {
    // One integer argument is hashed from a form built in a register (no serde); the key must
    // still be the one the serde path renders, on both sides of MessagePack's size boundaries,
    // so entries written before, by other processes (Redis) and by the string API agree.
    let m = manager();
    let unsigned = [
        0,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        u64::from(u32::MAX) + 1,
        u64::MAX,
    ];
    let signed = [
        i32::MIN,
        -32_769,
        -129,
        -33,
        -32,
        -1,
        0,
        127,
        128,
        70_000,
        i32::MAX,
    ];
    m.scope(async {
        for _ in 0..2 {
            for id in unsigned {
                assert_eq!(by_unsigned_id(id).await, id);
            }
            for id in signed {
                assert_eq!(by_signed_id(id), i64::from(id));
            }
        }
    })
    .await;
    assert_eq!(
        BY_ID_RUNS.load(SeqCst),
        unsigned.len() + signed.len(),
        "the second round is all hits"
    );
    let cache = m.cache("by-id");
    for id in unsigned {
        let key = serde_default_key("by_unsigned_id", &(&id,));
        assert_eq!(cache.get::<u64>(&key).await, Some(id), "{key}");
    }
    for id in signed {
        let key = serde_default_key("by_signed_id", &(&id,));
        assert_eq!(cache.get::<i64>(&key).await, Some(i64::from(id)), "{key}");
    }
    assert_eq!(cache.len(), unsigned.len() + signed.len());
}

#[cached(cache = "users", key = "user:{id}", tags = ["user:{id}", "org:{org}", "users"])]
async fn user_name(id: u32, org: u32) -> String {
    format!("user {id} of {org}")
}

#[tokio::test]
async fn tags_are_stored_with_the_entry() {
    let m = manager();
    m.scope(async {
        user_name(1, 10).await;
        user_name(2, 10).await;
        user_name(3, 20).await;
    })
    .await;
    let users = m.cache("users");
    assert_eq!(users.invalidate_tag("user:1").await, 1);
    assert_eq!(users.get::<String>("user:1").await, None);
    assert_eq!(users.invalidate_tag("org:10").await, 1);
    assert_eq!(users.invalidate_tag("users").await, 1);
    assert!(users.is_empty());
}

// --- generics, `impl Trait`, control flow --------------------------------------------------

static GENERIC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn size_of_default<T: Default + Serialize>() -> usize {
    GENERIC_RUNS.fetch_add(1, SeqCst);
    std::mem::size_of::<T>()
}

#[test]
fn a_generic_function_is_cached_per_type() {
    let m = manager();
    m.scope_sync(|| {
        assert_eq!(size_of_default::<u32>(), 4);
        assert_eq!(size_of_default::<u64>(), 8);
        assert_eq!(size_of_default::<u32>(), 4);
        assert_eq!(size_of_default::<u64>(), 8);
    });
    assert_eq!(GENERIC_RUNS.load(SeqCst), 2);
}

static IMPL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
async fn describe_value(value: impl Serialize + fmt::Debug) -> String {
    IMPL_RUNS.fetch_add(1, SeqCst);
    format!("{value:?}")
}

#[cached(key = "shout:{text:upper}")]
async fn shout(text: impl fmt::Display) -> String {
    format!("{text}!")
}

#[tokio::test]
async fn impl_trait_arguments_work_and_are_keyed_by_type() {
    let m = manager();
    m.scope(async {
        assert_eq!(describe_value(1u8).await, "1");
        assert_eq!(describe_value(1u8).await, "1");
        // Serializes like `1u8`, but is another type: another entry.
        assert_eq!(describe_value(1u64).await, "1");
        assert_eq!(IMPL_RUNS.load(SeqCst), 2);
        assert_eq!(shout("hi").await, "hi!");
        assert_eq!(shout(String::from("hi")).await, "hi!");
    })
    .await;
    assert_eq!(
        m.cache("default")
            .get::<String>("shout:HI")
            .await
            .as_deref(),
        Some("hi!")
    );
}

static WRAPPED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Serialize)]
struct Wrapped<T>(T);

/// `impl Trait` inside a pattern argument's type: the argument is destructured, and its type
/// still goes in the key.
#[cached]
fn wrapped_type(Wrapped(value): Wrapped<impl Serialize>) -> String {
    WRAPPED_RUNS.fetch_add(1, SeqCst);
    std::any::type_name_of_val(&value).to_owned()
}

/// The key companion renders the same key, type included.
#[cache_core::invalidates(wrapped_type(wrapped))]
fn forget_wrapped(wrapped: Wrapped<u64>) {
    let _ = wrapped;
}

#[test]
fn impl_trait_in_a_pattern_argument_is_keyed_by_type() {
    let m = manager();
    m.scope_sync(|| {
        assert_eq!(wrapped_type(Wrapped(1u8)), "u8");
        // Serializes like `1u8`, but is another type: another entry.
        assert_eq!(wrapped_type(Wrapped(1u64)), "u64");
        assert_eq!(wrapped_type(Wrapped(1u8)), "u8");
        assert_eq!(WRAPPED_RUNS.load(SeqCst), 2);
        forget_wrapped(Wrapped(1));
        assert_eq!(wrapped_type(Wrapped(1u64)), "u64");
        assert_eq!(wrapped_type(Wrapped(1u8)), "u8");
    });
    assert_eq!(WRAPPED_RUNS.load(SeqCst), 3);
}

static FLOW_RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, PartialEq)]
struct ParseError;

impl From<std::num::ParseIntError> for ParseError {
    fn from(_: std::num::ParseIntError) -> Self {
        ParseError
    }
}

#[cached]
async fn sum_csv(text: String) -> Result<u32, ParseError> {
    FLOW_RUNS.fetch_add(1, SeqCst);
    if text.is_empty() {
        return Ok(0);
    }
    let mut sum = 0;
    for part in text.split(',') {
        sum += part.trim().parse::<u32>()?;
    }
    Ok(sum)
}

#[cached]
fn first_word(text: String) -> Option<String> {
    let word = text.split_whitespace().next()?;
    if word == "stop" {
        return None;
    }
    Some(word.to_owned())
}

#[tokio::test]
async fn question_mark_and_early_return_work_in_the_body() {
    let m = manager();
    m.scope(async {
        assert_eq!(sum_csv(String::new()).await, Ok(0));
        assert_eq!(sum_csv("1, 2, 3".to_owned()).await, Ok(6));
        assert_eq!(sum_csv("1, x".to_owned()).await, Err(ParseError));
        assert_eq!(sum_csv("1, 2, 3".to_owned()).await, Ok(6));
        assert_eq!(FLOW_RUNS.load(SeqCst), 3);
    })
    .await;
    m.scope_sync(|| {
        assert_eq!(first_word("  ".to_owned()), None);
        assert_eq!(first_word("stop here".to_owned()), None);
        assert_eq!(first_word("go on".to_owned()).as_deref(), Some("go"));
    });
}

static FIB_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn fib(n: u64) -> u64 {
    FIB_RUNS.fetch_add(1, SeqCst);
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

#[test]
fn a_recursive_function_runs_once_per_argument() {
    let m = manager();
    assert_eq!(m.scope_sync(|| fib(30)), 832_040);
    assert_eq!(FIB_RUNS.load(SeqCst), 31);
}

// --- TTL -----------------------------------------------------------------------------------

static TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
async fn short_lived(x: u32) -> u32 {
    TTL_RUNS.fetch_add(1, SeqCst);
    x
}

#[tokio::test(start_paused = true)]
async fn an_entry_expires_after_its_ttl() {
    let m = CacheManager::builder().clock(Clock::tokio()).build();
    m.scope(async {
        short_lived(1).await;
        tokio::time::advance(Duration::from_secs(59)).await;
        short_lived(1).await;
        assert_eq!(TTL_RUNS.load(SeqCst), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        short_lived(1).await;
        assert_eq!(TTL_RUNS.load(SeqCst), 2);
    })
    .await;
}

static TTL_STR_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "30m")]
async fn half_hour(x: u32) -> u32 {
    TTL_STR_RUNS.fetch_add(1, SeqCst);
    x
}

#[tokio::test(start_paused = true)]
async fn a_ttl_string_is_a_duration() {
    let m = CacheManager::builder().clock(Clock::tokio()).build();
    m.scope(async {
        half_hour(1).await;
        tokio::time::advance(Duration::from_secs(29 * 60)).await;
        half_hour(1).await;
        assert_eq!(TTL_STR_RUNS.load(SeqCst), 1);
        tokio::time::advance(Duration::from_secs(60 + 1)).await;
        half_hour(1).await;
        assert_eq!(TTL_STR_RUNS.load(SeqCst), 2);
    })
    .await;
}

// --- single flight -------------------------------------------------------------------------

static HOT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
async fn hot(id: u32) -> String {
    HOT_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    format!("value {id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_callers_of_a_cold_key_run_the_body_once() {
    let m = manager();
    let callers: Vec<_> = (0..1_000).map(|_| spawn_scoped(&m, hot(7))).collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), "value 7");
    }
    assert_eq!(HOT_RUNS.load(SeqCst), 1);
}

static CANCEL_RUNS: AtomicUsize = AtomicUsize::new(0);
static CANCEL_STARTED: Notify = Notify::const_new();

/// The first run never finishes by itself; later runs return at once.
#[cached]
async fn cancelled_leader(id: u32) -> u32 {
    if CANCEL_RUNS.fetch_add(1, SeqCst) == 0 {
        CANCEL_STARTED.notify_one();
        std::future::pending::<()>().await;
    }
    id * 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_leader_is_cancelled_one_follower_runs_the_body() {
    let m = manager();
    let leader = spawn_scoped(&m, cancelled_leader(1));
    CANCEL_STARTED.notified().await;
    let followers: Vec<_> = (0..8)
        .map(|_| spawn_scoped(&m, cancelled_leader(1)))
        .collect();
    followers_waiting(&m, "default", 8).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    for follower in followers {
        assert_eq!(follower.await.unwrap(), 2);
    }
    assert_eq!(CANCEL_RUNS.load(SeqCst), 2);
}

static PANIC_RUNS: AtomicUsize = AtomicUsize::new(0);
static PANIC_STARTED: Notify = Notify::const_new();
static PANIC_GO: Notify = Notify::const_new();

/// The first run panics once released; later runs return at once.
#[cached]
async fn panicking_leader(id: u32) -> u32 {
    if PANIC_RUNS.fetch_add(1, SeqCst) == 0 {
        PANIC_STARTED.notify_one();
        PANIC_GO.notified().await;
        panic!("the leader's body panics");
    }
    id * 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_leader_panics_the_followers_still_complete() {
    let m = manager();
    let leader = spawn_scoped(&m, panicking_leader(1));
    PANIC_STARTED.notified().await;
    let followers: Vec<_> = (0..8)
        .map(|_| spawn_scoped(&m, panicking_leader(1)))
        .collect();
    followers_waiting(&m, "default", 8).await;
    PANIC_GO.notify_one();
    assert!(leader.await.unwrap_err().is_panic());
    for follower in followers {
        assert_eq!(follower.await.unwrap(), 3);
    }
    assert_eq!(PANIC_RUNS.load(SeqCst), 2);
}

static KEY_A_STARTED: Notify = Notify::const_new();
static KEY_A_RELEASE: Mutex<Option<oneshot::Receiver<()>>> = Mutex::new(None);

/// Key 1 waits until the test releases it; other keys return at once.
#[cached]
async fn per_key(id: u32) -> u32 {
    if id == 1 {
        let release = KEY_A_RELEASE.lock().unwrap().take();
        KEY_A_STARTED.notify_one();
        if let Some(release) = release {
            release.await.unwrap();
        }
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_keys_do_not_wait_for_each_other() {
    let (release, released) = oneshot::channel();
    *KEY_A_RELEASE.lock().unwrap() = Some(released);
    let m = manager();
    let a = spawn_scoped(&m, per_key(1));
    KEY_A_STARTED.notified().await;
    // Key 1's body is blocked until key 2's call is done: if key 2 waited for key 1, this would
    // never finish.
    let b = tokio::time::timeout(Duration::from_secs(10), m.scope(per_key(2))).await;
    assert_eq!(b, Ok(2));
    release.send(()).unwrap();
    assert_eq!(a.await.unwrap(), 1);
}

// --- the global manager and scopes ----------------------------------------------------------

static SITE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "site_scopes", key = "site:{id}")]
fn site_value(id: u64) -> u64 {
    SITE_RUNS.fetch_add(1, SeqCst);
    id
}

/// A call site remembers the global manager's store after its first call; a scope opened later
/// must still win over it (and the global entry must still be there after the scope).
#[test]
fn a_call_site_used_globally_follows_a_scope_opened_later() {
    assert_eq!(site_value(1), 1);
    assert_eq!(site_value(1), 1);
    assert_eq!(SITE_RUNS.load(SeqCst), 1, "the global manager's hit");

    let m = manager();
    assert_eq!(m.scope_sync(|| site_value(1)), 1);
    assert_eq!(SITE_RUNS.load(SeqCst), 2, "the scope's own cache was empty");
    assert_eq!(m.scope_sync(|| site_value(1)), 1);
    assert_eq!(SITE_RUNS.load(SeqCst), 2, "the scope's own hit");
    assert_eq!(m.cache("site_scopes").len(), 1);

    assert_eq!(site_value(1), 1);
    assert_eq!(
        SITE_RUNS.load(SeqCst),
        2,
        "the global entry, untouched by the scope"
    );
    assert_eq!(CacheManager::global().cache("site_scopes").len(), 1);
}

// --- arguments that share an extractor's name ------------------------------------------------

/// A type of the user's own called `State`, with no type argument, behind a reference or under a
/// path of their own: none of them is axum's `State<S>`, so each is hashed into the key.
mod own_state {
    use super::*;

    #[derive(Serialize, Clone, Copy, Debug)]
    pub(crate) enum State {
        Open,
        Shipped,
    }

    pub(crate) mod us {
        #[derive(serde::Serialize, Clone, Copy, Debug)]
        pub(crate) struct State(pub(crate) u8);
    }

    pub(crate) static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[cached]
    pub(crate) fn orders_in(state: State) -> String {
        RUNS.fetch_add(1, SeqCst);
        format!("{state:?}")
    }

    #[cached]
    pub(crate) fn orders_in_ref(state: &State) -> String {
        RUNS.fetch_add(1, SeqCst);
        format!("{state:?}")
    }

    #[cached]
    pub(crate) fn orders_in_us(state: us::State) -> String {
        RUNS.fetch_add(1, SeqCst);
        format!("{state:?}")
    }
}

#[test]
fn an_argument_of_a_type_of_ones_own_named_state_is_in_the_key() {
    use own_state::{State, orders_in, orders_in_ref, orders_in_us, us};
    let m = manager();
    m.scope_sync(|| {
        for _ in 0..2 {
            assert_eq!(orders_in(State::Open), "Open");
            assert_eq!(orders_in(State::Shipped), "Shipped");
            assert_eq!(orders_in_ref(&State::Open), "Open");
            assert_eq!(orders_in_ref(&State::Shipped), "Shipped");
            assert_eq!(orders_in_us(us::State(1)), "State(1)");
            assert_eq!(orders_in_us(us::State(2)), "State(2)");
        }
    });
    assert_eq!(
        own_state::RUNS.load(SeqCst),
        6,
        "one run per state, then hits"
    );
}

// --- items of the same name in different places ----------------------------------------------

static NAMED_RUNS: AtomicUsize = AtomicUsize::new(0);

struct Named;

trait First {
    fn name(&self, id: u32) -> String;
}

trait Second {
    fn name(&self, id: u32) -> String;
}

impl First for Named {
    #[cached]
    fn name(&self, id: u32) -> String {
        NAMED_RUNS.fetch_add(1, SeqCst);
        format!("first {id}")
    }
}

impl Second for Named {
    #[cached]
    fn name(&self, id: u32) -> String {
        NAMED_RUNS.fetch_add(1, SeqCst);
        format!("second {id}")
    }
}

impl Named {
    #[cached]
    fn name(&self, id: u32) -> String {
        NAMED_RUNS.fetch_add(1, SeqCst);
        format!("inherent {id}")
    }
}

/// Methods of the same name on the same type, from two trait impls and an inherent impl, are
/// three functions: each has its own entries.
#[test]
fn methods_of_the_same_name_from_different_impls_have_their_own_keys() {
    let m = manager();
    m.scope_sync(|| {
        for _ in 0..2 {
            assert_eq!(First::name(&Named, 1), "first 1");
            assert_eq!(Second::name(&Named, 1), "second 1");
            assert_eq!(Named.name(1), "inherent 1");
        }
    });
    assert_eq!(NAMED_RUNS.load(SeqCst), 3, "one run each, then hits");
    assert_eq!(m.cache("default").len(), 3);
}

static LOCAL_RUNS: AtomicUsize = AtomicUsize::new(0);

fn local_one() -> u32 {
    #[cached]
    fn local() -> u32 {
        LOCAL_RUNS.fetch_add(1, SeqCst);
        1
    }
    local()
}

fn local_two() -> u32 {
    #[cached]
    fn local() -> u32 {
        LOCAL_RUNS.fetch_add(1, SeqCst);
        2
    }
    local()
}

/// Functions of the same name declared inside two different functions are two functions.
#[test]
fn local_functions_of_the_same_name_have_their_own_keys() {
    let m = manager();
    m.scope_sync(|| {
        for _ in 0..2 {
            assert_eq!(local_one(), 1);
            assert_eq!(local_two(), 2);
        }
    });
    assert_eq!(LOCAL_RUNS.load(SeqCst), 2, "one run each, then hits");
}

// --- arguments named like the expansion's locals -----------------------------------------------

static LOCAL_NAME_RUNS: AtomicUsize = AtomicUsize::new(0);

/// The expansion's own locals (the key buffer `__k`, a tag's `__t`) are hygienic: arguments of
/// those names are the arguments, in the key, the tags and the body.
#[cached(tags = ["t:{__t}"])]
fn named_like_locals(__k: u64, __t: u64) -> u64 {
    LOCAL_NAME_RUNS.fetch_add(1, SeqCst);
    __k * 10 + __t
}

#[tokio::test]
async fn arguments_named_like_the_expansions_locals_are_the_arguments() {
    let m = manager();
    m.scope(async {
        for _ in 0..2 {
            assert_eq!(named_like_locals(1, 2), 12);
            assert_eq!(named_like_locals(3, 4), 34);
        }
        assert_eq!(
            LOCAL_NAME_RUNS.load(SeqCst),
            2,
            "one run per arguments, then hits"
        );
        assert_eq!(
            m.cache("default").invalidate_tag("t:4").await,
            1,
            "tagged `t:{{__t}}`"
        );
        assert_eq!(named_like_locals(3, 4), 34);
        assert_eq!(named_like_locals(1, 2), 12);
        assert_eq!(LOCAL_NAME_RUNS.load(SeqCst), 3);
    })
    .await;
}

// --- owned arguments of background modes ------------------------------------------------------

static FORMAT_RUNS: AtomicUsize = AtomicUsize::new(0);

/// `stale` runs the body after the call returns, so the arguments must be owned: a closure whose
/// `Fn(&str)` sugar elides a lifetime (or names one with `for<'a>`) borrows nothing itself.
#[cached(cache = "formatted", key = "formatted:{id}", ttl = 10, stale = 600)]
async fn formatted(id: u64, format: impl Fn(&str) -> String + Send + Sync + 'static) -> String {
    FORMAT_RUNS.fetch_add(1, SeqCst);
    format(&id.to_string())
}

#[cached(
    cache = "formatted",
    key = "formatted_hrtb:{id}",
    ttl = 10,
    stale = 600
)]
async fn formatted_hrtb(
    id: u64,
    format: impl for<'a> Fn(&'a str) -> String + Send + 'static,
) -> String {
    FORMAT_RUNS.fetch_add(1, SeqCst);
    format(&id.to_string())
}

#[tokio::test(start_paused = true)]
async fn a_closure_over_borrowed_arguments_is_an_owned_argument_of_a_background_refresh() {
    let m = CacheManager::builder().clock(Clock::tokio()).build();
    m.scope(async {
        assert_eq!(formatted(1, |s| format!("<{s}>")).await, "<1>");
        assert_eq!(formatted(1, |s| format!("[{s}]")).await, "<1>", "a hit");
        assert_eq!(formatted_hrtb(1, |s| format!("<{s}>")).await, "<1>");
        assert_eq!(FORMAT_RUNS.load(SeqCst), 2);

        // Stale: the old value at once, and the body refreshed in the background with the
        // closure it was given, which it owns.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(formatted(1, |s| format!("[{s}]")).await, "<1>");
        let cache = m.cache("formatted");
        tokio::time::timeout(Duration::from_secs(60), async {
            while cache.get::<String>("formatted:1").await.as_deref() != Some("[1]") {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the background refresh stored the new value");
        assert_eq!(FORMAT_RUNS.load(SeqCst), 3);
    })
    .await;
}

// --- default keys that must tell values apart -------------------------------------------------

static OPTION_KEY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn optional_limit(limit: Option<Option<u32>>) -> String {
    OPTION_KEY_RUNS.fetch_add(1, SeqCst);
    format!("{limit:?}")
}

#[cached]
fn optional_unit(flag: Option<()>) -> bool {
    OPTION_KEY_RUNS.fetch_add(1, SeqCst);
    flag.is_some()
}

/// `None`, `Some(None)` and `Some(Some(..))` are different arguments, and so are `None` and
/// `Some(())`: each has its own entry.
#[test]
fn nested_options_and_some_unit_are_distinct_keys() {
    let m = manager();
    m.scope_sync(|| {
        for _ in 0..2 {
            assert_eq!(optional_limit(None), "None");
            assert_eq!(optional_limit(Some(None)), "Some(None)");
            assert_eq!(optional_limit(Some(Some(3))), "Some(Some(3))");
            assert!(!optional_unit(None));
            assert!(optional_unit(Some(())));
        }
    });
    assert_eq!(
        OPTION_KEY_RUNS.load(SeqCst),
        5,
        "one run per value, then hits"
    );
}

static MAP_KEY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn total(counts: std::collections::HashMap<String, u32>) -> u32 {
    MAP_KEY_RUNS.fetch_add(1, SeqCst);
    counts.values().sum()
}

/// A `HashMap` iterates in its own order (each map is seeded on its own): equal maps still
/// have one key.
#[test]
fn equal_hash_maps_share_a_key() {
    let entries: Vec<(String, u32)> = (0..32).map(|i| (format!("item{i}"), i)).collect();
    let m = manager();
    m.scope_sync(|| {
        for round in 0..10 {
            let map = if round % 2 == 0 {
                entries.iter().cloned().collect()
            } else {
                entries.iter().rev().cloned().collect()
            };
            assert_eq!(total(map), (0..32).sum::<u32>());
        }
    });
    assert_eq!(MAP_KEY_RUNS.load(SeqCst), 1, "one run, then hits");
    assert_eq!(m.cache("default").len(), 1);
}

// --- arguments under `#[cfg]` ---------------------------------------------------------------

static CFG_ARG_RUNS: AtomicUsize = AtomicUsize::new(0);

/// `absent` is configured out: the function takes `present` and `other` only.
#[cached]
pub fn cfg_args(#[cfg(not(test))] absent: u32, #[cfg(test)] present: u32, other: u32) -> u32 {
    CFG_ARG_RUNS.fetch_add(1, SeqCst);
    present + other
}

/// Its one argument is configured out: it takes none.
#[cached]
fn cfg_no_args(#[cfg(not(test))] absent: u32) -> u32 {
    CFG_ARG_RUNS.fetch_add(1, SeqCst);
    7
}

#[cache_core::invalidates(cfg_args(present, other))]
fn cfg_args_changed(present: u32, other: u32) {
    let _ = (present, other);
}

/// The default key and the key companion cover the arguments that are configured in, and leave
/// out the one that is not.
#[test]
fn an_argument_under_cfg_is_keyed_only_when_configured_in() {
    let m = manager();
    m.scope_sync(|| {
        assert_eq!(cfg_args(1, 2), 3);
        assert_eq!(cfg_args(1, 2), 3);
        assert_eq!(cfg_args(2, 1), 3);
        assert_eq!(CFG_ARG_RUNS.load(SeqCst), 2, "one run per argument pair");

        cfg_args_changed(1, 2);
        assert_eq!(cfg_args(1, 2), 3);
        assert_eq!(cfg_args(2, 1), 3);
        assert_eq!(CFG_ARG_RUNS.load(SeqCst), 3, "only (1, 2) was invalidated");

        assert_eq!(cfg_no_args(), 7);
        assert_eq!(cfg_no_args(), 7);
        assert_eq!(CFG_ARG_RUNS.load(SeqCst), 4, "one run, then a hit");
    });
}

// --- associated functions that do not name `Self` ---------------------------------------------

static GREETER_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A provided method without `self` whose body reads `Self`: its signature does not say so.
pub trait Greeter {
    fn name() -> String;

    #[cached]
    fn greeting(id: u64) -> String {
        GREETER_RUNS.fetch_add(1, SeqCst);
        format!("{} {id}", Self::name())
    }
}

#[derive(Debug)]
pub struct Ada;
#[derive(Debug)]
pub struct Bob;
impl Greeter for Ada {
    fn name() -> String {
        "Ada".to_owned()
    }
}
impl Greeter for Bob {
    fn name() -> String {
        "Bob".to_owned()
    }
}

/// Each implementor's calls are its own entries.
#[test]
fn a_provided_method_is_keyed_by_its_implementor() {
    let m = manager();
    m.scope_sync(|| {
        for _ in 0..2 {
            assert_eq!(Ada::greeting(1), "Ada 1");
            assert_eq!(Bob::greeting(1), "Bob 1");
        }
    });
    assert_eq!(GREETER_RUNS.load(SeqCst), 2, "one run per implementor");
}

static SIZE_OF_RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug)]
pub struct SizeOf<T>(std::marker::PhantomData<T>);

impl<T> SizeOf<T> {
    /// Reads the impl's `T`, which its signature does not name.
    #[cached]
    pub async fn size(extra: u64) -> u64 {
        SIZE_OF_RUNS.fetch_add(1, SeqCst);
        std::mem::size_of::<T>() as u64 + extra
    }
}

#[cache_core::invalidates(SizeOf::<u64>::size(extra))]
async fn size_of_u64_changed(extra: u64) {
    let _ = extra;
}

/// A function of a generic impl is keyed by the impl's type arguments, and its key companion
/// renders the same key.
#[tokio::test]
async fn a_function_of_a_generic_impl_is_keyed_by_its_type_arguments() {
    let m = manager();
    m.scope(async {
        for _ in 0..2 {
            assert_eq!(SizeOf::<u8>::size(0).await, 1);
            assert_eq!(SizeOf::<u64>::size(0).await, 8);
        }
        assert_eq!(SIZE_OF_RUNS.load(SeqCst), 2, "one run per type argument");

        size_of_u64_changed(0).await;
        assert_eq!(SizeOf::<u8>::size(0).await, 1);
        assert_eq!(SizeOf::<u64>::size(0).await, 8);
        assert_eq!(
            SIZE_OF_RUNS.load(SeqCst),
            3,
            "only `SizeOf<u64>`'s entry was removed"
        );
    })
    .await;
}

static SIZER_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A provided method of a generic trait: `Self` is the same type in both impls below, the trait's
/// type argument is not.
pub trait Sizer<T> {
    #[cached]
    fn size(&self, extra: u64) -> u64 {
        SIZER_RUNS.fetch_add(1, SeqCst);
        std::mem::size_of::<T>() as u64 + extra
    }
}

#[derive(Debug)]
pub struct BothSizes;
impl Sizer<u8> for BothSizes {}
impl Sizer<u64> for BothSizes {}

#[test]
fn a_provided_method_is_keyed_by_the_traits_type_arguments() {
    let m = manager();
    m.scope_sync(|| {
        for _ in 0..2 {
            assert_eq!(<BothSizes as Sizer<u8>>::size(&BothSizes, 0), 1);
            assert_eq!(<BothSizes as Sizer<u64>>::size(&BothSizes, 0), 8);
        }
    });
    assert_eq!(SIZER_RUNS.load(SeqCst), 2, "one run per impl");
}

static MARK_RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug)]
pub struct Punct;

impl Punct {
    /// A const argument that is a closing bracket: `type_name` spells it as it is (`mark<'>'>`).
    #[cached]
    pub fn mark<const C: char>() -> String {
        MARK_RUNS.fetch_add(1, SeqCst);
        format!("Punct {C}")
    }
}

/// A function of the module with the same name and const argument.
#[cached]
fn mark<const C: char>() -> String {
    MARK_RUNS.fetch_add(1, SeqCst);
    format!("free {C}")
}

/// A method keeps its impl's scope whatever characters its const arguments hold, and so never
/// shares entries with a function of its module.
#[test]
fn a_char_const_argument_does_not_hide_a_methods_scope() {
    let m = manager();
    m.scope_sync(|| {
        for c in 0..2 {
            assert_eq!(Punct::mark::<'>'>(), "Punct >", "call {c}");
            assert_eq!(mark::<'>'>(), "free >", "call {c}");
            assert_eq!(Punct::mark::<')'>(), "Punct )", "call {c}");
            assert_eq!(mark::<')'>(), "free )", "call {c}");
        }
    });
    assert_eq!(
        MARK_RUNS.load(SeqCst),
        4,
        "one run per function and argument"
    );
}

// --- a body asking for its own key ------------------------------------------------------------

static ROW_RUNS: AtomicUsize = AtomicUsize::new(0);
static VIEW_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "shared-key", key = "user:{id}")]
async fn user_row(id: u64) -> u64 {
    ROW_RUNS.fetch_add(1, SeqCst);
    id
}

/// Shares `user_row`'s key template and calls it: the inner call finds the outer one's flight,
/// which is its own caller.
#[cached(cache = "shared-key", key = "user:{id}")]
async fn user_view(id: u64) -> u64 {
    VIEW_RUNS.fetch_add(1, SeqCst);
    user_row(id).await + 100
}

#[tokio::test]
async fn two_functions_sharing_a_key_one_calling_the_other_do_not_deadlock() {
    let m = manager();
    let view = tokio::time::timeout(Duration::from_secs(10), m.scope(user_view(7)))
        .await
        .expect("the inner call waited for the outer one, which waits for it");
    assert_eq!(view, 107);
    assert_eq!((VIEW_RUNS.load(SeqCst), ROW_RUNS.load(SeqCst)), (1, 1));
    // The outer value was stored last; both now hit it.
    assert_eq!(m.scope(user_view(7)).await, 107);
    assert_eq!(m.scope(user_row(7)).await, 107);
    assert_eq!((VIEW_RUNS.load(SeqCst), ROW_RUNS.load(SeqCst)), (1, 1));
}

// --- functions written by `macro_rules!` -----------------------------------------------------

static MACRO_NAMED_RUNS: AtomicUsize = AtomicUsize::new(0);
static MACRO_TYPED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// The argument's name comes from the caller and its type from the macro: two hygiene contexts.
macro_rules! cached_square {
    ($name:ident, $arg:ident) => {
        #[cached]
        async fn $name($arg: u64) -> u64 {
            MACRO_NAMED_RUNS.fetch_add(1, SeqCst);
            $arg * $arg
        }
    };
}
cached_square!(macro_square, n);

/// The other way round: the name is the macro's, the type the caller's.
macro_rules! cached_widen {
    ($name:ident, $ty:ident) => {
        #[cached]
        fn $name(id: $ty) -> u64 {
            MACRO_TYPED_RUNS.fetch_add(1, SeqCst);
            u64::from(id) + 1
        }
    };
}
cached_widen!(macro_widen, u32);

static MACRO_TEMPLATE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// The template is the macro's and the argument's name the caller's: a placeholder names an
/// argument by its text, whatever the hygiene of either.
macro_rules! cached_by_id {
    ($name:ident, $forget:ident, $arg:ident) => {
        #[cached(cache = "macro-template", key = "user:{id}", tags = ["users:{id}"])]
        fn $name($arg: u64) -> u64 {
            MACRO_TEMPLATE_RUNS.fetch_add(1, SeqCst);
            $arg + 1
        }

        #[cache_core::invalidates(cache = "macro-template", key = "user:{id}")]
        fn $forget($arg: u64) {
            let _ = $arg;
        }
    };
}
cached_by_id!(macro_user, forget_macro_user, id);

#[test]
fn a_template_written_by_a_macro_names_an_argument_named_by_its_caller() {
    let m = manager();
    m.scope_sync(|| {
        assert_eq!(macro_user(1), 2);
        assert_eq!(macro_user(2), 3);
        assert_eq!(macro_user(1), 2);
    });
    assert_eq!(MACRO_TEMPLATE_RUNS.load(SeqCst), 2);
    let cache = m.cache("macro-template");
    assert_eq!(cache.blocking().get::<u64>("user:1"), Some(2));
    assert_eq!(cache.blocking().get::<u64>("user:2"), Some(3));
    m.scope_sync(|| forget_macro_user(1));
    assert_eq!(cache.blocking().get::<u64>("user:1"), None);
}

static MACRO_OPTIONS_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Options passed in as `$x:expr` fragments, which reach the attribute in invisible groups.
macro_rules! cached_with {
    ($name:ident, $forget:ident, $cache:expr, $ttl:expr, $key:expr, $tag:expr) => {
        #[cached(cache = $cache, ttl = $ttl, key = $key, tags = [$tag], cache_none = true)]
        fn $name(id: u64) -> Option<u64> {
            MACRO_OPTIONS_RUNS.fetch_add(1, SeqCst);
            id.checked_sub(1)
        }

        #[cache_core::invalidates(cache = $cache, keys = [$key])]
        fn $forget(id: u64) {
            let _ = id;
        }
    };
}
cached_with!(
    macro_item,
    forget_macro_item,
    "macro-options",
    60,
    "item:{id}",
    "items"
);

macro_rules! forget_by_call {
    ($name:ident, $arg:ident, $call:expr) => {
        #[cache_core::invalidates($call)]
        fn $name($arg: u64) {
            let _ = $arg;
        }
    };
}
forget_by_call!(forget_macro_item_by_call, id, macro_item(id));

#[test]
fn options_given_as_macro_rules_expressions_are_read_as_written() {
    let m = manager();
    m.scope_sync(|| {
        assert_eq!(macro_item(1), Some(0));
        assert_eq!(macro_item(2), Some(1));
        assert_eq!(macro_item(1), Some(0));
    });
    assert_eq!(MACRO_OPTIONS_RUNS.load(SeqCst), 2);
    let cache = m.cache("macro-options");
    assert_eq!(cache.blocking().get::<Option<u64>>("item:2"), Some(Some(1)));
    m.scope_sync(|| forget_macro_item(2));
    assert_eq!(cache.blocking().get::<Option<u64>>("item:2"), None);
    m.scope_sync(|| forget_macro_item_by_call(1));
    assert_eq!(cache.len(), 0);
}

#[tokio::test]
async fn a_default_key_reads_arguments_whose_name_and_type_come_from_different_macros() {
    let m = manager();
    m.scope(async {
        assert_eq!(macro_square(2).await, 4);
        assert_eq!(macro_square(3).await, 9);
        assert_eq!(macro_square(2).await, 4);
        assert_eq!(MACRO_NAMED_RUNS.load(SeqCst), 2);
        assert_eq!(macro_widen(1), 2);
        assert_eq!(macro_widen(2), 3);
        assert_eq!(macro_widen(1), 2);
        assert_eq!(MACRO_TYPED_RUNS.load(SeqCst), 2);
    })
    .await;
}

// --- names that are keywords ------------------------------------------------------------------

static KEYWORD_RUNS: AtomicUsize = AtomicUsize::new(0);

struct Listing {
    r#type: &'static str,
}

/// A template is text, not Rust: a field or an argument named by a keyword (`r#type`) may be
/// written without its `r#`, or with it.
#[cached(key = "listing:{listing.type}:{listing.r#type}:{as}:{r#as}")]
fn listing_label(listing: &Listing, r#as: u32) -> String {
    KEYWORD_RUNS.fetch_add(1, SeqCst);
    format!("{} as {}", listing.r#type, r#as)
}

#[tokio::test]
async fn a_key_template_names_keyword_fields_and_arguments_with_or_without_r_hash() {
    let m = manager();
    m.scope(async {
        let (flat, house) = (Listing { r#type: "flat" }, Listing { r#type: "house" });
        assert_eq!(listing_label(&flat, 1), "flat as 1");
        assert_eq!(listing_label(&house, 1), "house as 1");
        assert_eq!(listing_label(&flat, 2), "flat as 2");
        assert_eq!(listing_label(&flat, 1), "flat as 1");
        assert_eq!(KEYWORD_RUNS.load(SeqCst), 3);
    })
    .await;
    assert_eq!(m.cache("default").len(), 3);
}
