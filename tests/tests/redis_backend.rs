//! The Redis tier on a real standalone `redis-server`, through cache-core's `RemoteBackend` and
//! `RemoteTier` traits.
//!
//! One server serves the whole binary (each test uses its own namespace); the fault tests
//! (stop, restart, pause, wrong password) start their own. The shared server has `KEYS`,
//! `FLUSHDB` and `FLUSHALL` renamed away, so a bulk operation using them would fail here.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cache_core::{RemoteBackend, RemoteError};
use cache_redis::{RedisBackend, RedisConfig};
use tests::redis_server::{BlackHole, RedisServer, free_port};

/// The most any single operation may take in these tests, even against a dead server.
const BOUND: Duration = Duration::from_secs(2);

use tests::NO_BULK_COMMANDS;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start_with_args(NO_BULK_COMMANDS))
}

fn backend(namespace: &str) -> RedisBackend {
    RedisBackend::new(RedisConfig::standalone(server().url()).namespace(namespace))
}

fn tags(names: &[&str]) -> Vec<Arc<str>> {
    names.iter().map(|&n| Arc::from(n)).collect()
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("a Redis operation took longer than the bound")
}

/// Polls `f` until it returns true, or panics with `what` after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bytes_round_trip() {
    let b = backend("round-trip");
    let t = b.tier("c");
    let value: Vec<u8> = (0..=255u8).chain([0, 0, 0xCA, 0xC5]).collect();
    assert_eq!(t.get("k").await.unwrap(), None);
    t.set("k", value.clone(), None, &[]).await.unwrap();
    assert_eq!(t.get("k").await.unwrap(), Some(value));
    t.set("k", b"second".to_vec(), None, &[]).await.unwrap();
    assert_eq!(t.get("k").await.unwrap().as_deref(), Some(&b"second"[..]));
    t.set("empty", Vec::new(), None, &[]).await.unwrap();
    // Reads are `GETRANGE 0 max_value_bytes` (bounded memory for foreign values), which cannot
    // tell an empty string from no key: an empty value reads as absent. The core never stores
    // one (every envelope has a 32-byte header).
    assert_eq!(t.get("empty").await.unwrap(), None);
    assert!(t.delete("k").await.unwrap());
    assert!(!t.delete("k").await.unwrap());
    assert_eq!(t.get("k").await.unwrap(), None);
    // Stored where the layout says, without a TTL.
    let key = b.redis_key("c", "empty");
    assert_eq!(key, "round-trip:c:empty");
    assert_eq!(server().cli(&["TTL", &key]), "-1");
}

#[tokio::test]
async fn ttl_expires_in_redis_itself() {
    let b = backend("ttl");
    let t = b.tier("c");
    t.set(
        "short",
        b"v".to_vec(),
        Some(Duration::from_millis(200)),
        &[],
    )
    .await
    .unwrap();
    t.set("long", b"v".to_vec(), Some(Duration::from_secs(60)), &[])
        .await
        .unwrap();
    let pttl: i64 = server()
        .cli(&["PTTL", &b.redis_key("c", "long")])
        .parse()
        .unwrap();
    assert!((59_000..=60_000).contains(&pttl), "PTTL {pttl}");
    eventually(
        Duration::from_secs(5),
        "the short entry expires",
        || async { t.get("short").await.unwrap().is_none() },
    )
    .await;
    assert!(t.get("long").await.unwrap().is_some());
}

#[tokio::test]
async fn namespaces_are_isolated() {
    let a = backend("iso-a");
    let b = backend("iso-b");
    // A namespace that contains another's name plus `:` is not under its prefix.
    let nested = backend("iso-a:c");
    for (backend, v) in [(&a, "a"), (&b, "b"), (&nested, "nested")] {
        let t = backend.tier("c");
        t.set("k", v.as_bytes().to_vec(), None, &tags(&["shared"]))
            .await
            .unwrap();
    }
    assert_eq!(
        a.tier("c").get("k").await.unwrap().as_deref(),
        Some(&b"a"[..])
    );
    assert_eq!(
        b.tier("c").get("k").await.unwrap().as_deref(),
        Some(&b"b"[..])
    );

    assert_eq!(a.delete_tag("shared").await.unwrap(), 1);
    assert!(b.tier("c").get("k").await.unwrap().is_some());
    assert!(nested.tier("c").get("k").await.unwrap().is_some());

    a.tier("c")
        .set("k", b"a".to_vec(), None, &[])
        .await
        .unwrap();
    assert_eq!(a.tier("c").clear().await.unwrap(), 1);
    a.tier("c")
        .set("k", b"a".to_vec(), None, &[])
        .await
        .unwrap();
    a.tier("d")
        .set("k", b"a".to_vec(), None, &[])
        .await
        .unwrap();
    assert_eq!(a.clear_all().await.unwrap(), 2);
    assert_eq!(a.tier("c").get("k").await.unwrap(), None);
    assert_eq!(
        b.tier("c").get("k").await.unwrap().as_deref(),
        Some(&b"b"[..])
    );
    assert_eq!(
        nested.tier("c").get("k").await.unwrap().as_deref(),
        Some(&b"nested"[..])
    );
    // clear_all also removes the namespace's tag sets.
    assert!(b.clear_all().await.unwrap() >= 2, "value and tag set");
    assert_eq!(server().cli(&["EXISTS", &b.tag_key("shared")]), "0");
}

#[tokio::test]
async fn glob_characters_in_a_namespace_are_escaped() {
    let plain = backend("glob1");
    let bracketed = backend("glob[1]");
    plain
        .tier("c")
        .set("k", b"v".to_vec(), None, &[])
        .await
        .unwrap();
    bracketed
        .tier("c")
        .set("k", b"v".to_vec(), None, &[])
        .await
        .unwrap();
    // Unescaped, `glob[1]:*` would match `glob1:c:k`.
    assert_eq!(bracketed.clear_all().await.unwrap(), 1);
    assert!(plain.tier("c").get("k").await.unwrap().is_some());
    assert_eq!(bracketed.tier("c").get("k").await.unwrap(), None);
}

#[tokio::test]
async fn tags_remove_exactly_the_tagged_keys_across_caches() {
    let b = backend("tags");
    let users = b.tier("users");
    let posts = b.tier("posts");
    let ttl = Some(Duration::from_secs(60));
    users
        .set("u1", b"1".to_vec(), ttl, &tags(&["team:7"]))
        .await
        .unwrap();
    users
        .set("u2", b"2".to_vec(), ttl, &tags(&["team:7", "team:8"]))
        .await
        .unwrap();
    users
        .set("u3", b"3".to_vec(), ttl, &tags(&["team:8"]))
        .await
        .unwrap();
    users.set("u4", b"4".to_vec(), ttl, &[]).await.unwrap();
    posts
        .set("p1", b"p".to_vec(), ttl, &tags(&["team:7"]))
        .await
        .unwrap();

    assert_eq!(b.delete_tag("team:7").await.unwrap(), 3);
    assert_eq!(users.get("u1").await.unwrap(), None);
    assert_eq!(users.get("u2").await.unwrap(), None);
    assert_eq!(posts.get("p1").await.unwrap(), None);
    assert!(users.get("u3").await.unwrap().is_some());
    assert!(users.get("u4").await.unwrap().is_some());
    assert_eq!(server().cli(&["EXISTS", &b.tag_key("team:7")]), "0");
    // Again: nothing left to remove.
    assert_eq!(b.delete_tag("team:7").await.unwrap(), 0);
    // Values already gone (u2 by the first tag, u3 by hand) are not counted.
    users
        .set("u5", b"5".to_vec(), ttl, &tags(&["team:8"]))
        .await
        .unwrap();
    users.delete("u3").await.unwrap();
    assert_eq!(b.delete_tag("team:8").await.unwrap(), 1);
}

#[tokio::test]
async fn tag_records_live_as_long_as_their_longest_value() {
    let b = backend("tag-ttl");
    let t = b.tier("c");
    let tag = tags(&["t"]);
    let tag_key = b.tag_key("t");
    let pttl = || -> i64 { server().cli(&["PTTL", &tag_key]).parse().unwrap() };
    let score = |key: &str| -> f64 {
        server()
            .cli(&["ZSCORE", &tag_key, &b.redis_key("c", key)])
            .parse()
            .unwrap()
    };

    t.set("a", b"v".to_vec(), Some(Duration::from_secs(60)), &tag)
        .await
        .unwrap();
    assert!(
        (59_000..=60_000).contains(&pttl()),
        "new record gets the TTL"
    );
    t.set("b", b"v".to_vec(), Some(Duration::from_secs(120)), &tag)
        .await
        .unwrap();
    assert!(pttl() > 110_000, "extended for a longer-lived value");
    t.set("c", b"v".to_vec(), Some(Duration::from_secs(10)), &tag)
        .await
        .unwrap();
    assert!(pttl() > 110_000, "never shortened");
    // A value's score only grows: a writer that tags it late never lowers it below the expiry
    // of a value written meanwhile.
    let a = score("a");
    t.set("a", b"v".to_vec(), Some(Duration::from_secs(10)), &tag)
        .await
        .unwrap();
    assert_eq!(score("a"), a);
    t.set("d", b"v".to_vec(), None, &tag).await.unwrap();
    assert_eq!(
        pttl(),
        -1,
        "a value without TTL makes the record persistent"
    );
    assert_eq!(score("d"), f64::INFINITY);
    t.set("e", b"v".to_vec(), Some(Duration::from_secs(10)), &tag)
        .await
        .unwrap();
    assert_eq!(pttl(), -1, "and it stays so");
    assert_eq!(names_in(&tag_key), 5);

    // A record of short-lived values expires with them instead of leaking.
    t.set(
        "s",
        b"v".to_vec(),
        Some(Duration::from_millis(200)),
        &tags(&["short"]),
    )
    .await
    .unwrap();
    let short = b.tag_key("short");
    eventually(
        Duration::from_secs(5),
        "the short tag's record expires",
        || async { server().cli(&["EXISTS", &short]) == "0" },
    )
    .await;
}

/// How many value names the record at `key` holds, whatever its type (a sorted set; a plain set
/// as older versions wrote).
fn names_in(key: &str) -> usize {
    let count = match server().cli(&["TYPE", key]).as_str() {
        "zset" => "ZCARD",
        "set" => "SCARD",
        "none" => return 0,
        other => panic!("{key} holds a {other}"),
    };
    server().cli(&[count, key]).parse().unwrap()
}

/// How many of `keys` (full Redis keys) exist.
fn existing(keys: &[String]) -> usize {
    let mut args = vec!["EXISTS"];
    args.extend(keys.iter().map(String::as_str));
    server().cli(&args).parse().unwrap()
}

#[tokio::test]
async fn a_tag_record_forgets_values_that_expired() {
    // A stream of distinct short-lived values under one tag (`category:books` on `book:{id}`),
    // in rounds that each begin once the previous one has expired, the tag kept alive meanwhile
    // by one longer-lived value (as a steady stream keeps it alive by its next writes). Nothing
    // removed the names of expired values from a tag set that lived on: it named every value
    // ever written (measured: 3,000 values with a 300 ms TTL over 3 s left 19 live and a set of
    // 3,000 names).
    const ROUND: usize = 300;
    let b = backend("tag-trim");
    let t = b.tier("books");
    let tag = tags(&["category:books"]);
    let record = b.tag_key("category:books");
    t.set("book:anchor", vec![1], Some(Duration::from_secs(60)), &tag)
        .await
        .unwrap();
    for round in 0..3 {
        let keys: Vec<String> = (0..ROUND).map(|i| format!("book:{round}:{i}")).collect();
        for key in &keys {
            t.set(key, vec![1], Some(Duration::from_millis(100)), &tag)
                .await
                .unwrap();
        }
        let full: Vec<String> = keys.iter().map(|k| b.redis_key("books", k)).collect();
        let named = names_in(&record);
        let live = existing(&full);
        assert!(
            named <= 1 + ROUND,
            "round {round}: the record names {named} values; only the anchor and this round's \
             {ROUND} can live"
        );
        assert!(
            named > live,
            "round {round}: {live} live values and the anchor, {named} named"
        );
        eventually(
            Duration::from_secs(5),
            "the round's values expire",
            || async { existing(&full) == 0 },
        )
        .await;
    }
    // The next write leaves the record naming the two live values, for as long as they live.
    t.set("book:last", vec![1], Some(Duration::from_secs(90)), &tag)
        .await
        .unwrap();
    assert_eq!(names_in(&record), 2);
    let pttl: i64 = server().cli(&["PTTL", &record]).parse().unwrap();
    assert!((89_000..=90_000).contains(&pttl), "{pttl}");
    assert_eq!(b.delete_tag("category:books").await.unwrap(), 2);
    assert_eq!(t.get("book:anchor").await.unwrap(), None);
    assert_eq!(t.get("book:last").await.unwrap(), None);
    assert_eq!(server().cli(&["EXISTS", &record]), "0");
}

#[tokio::test]
async fn invalidation_drains_the_tag_sets_of_older_versions() {
    // What a version before the sorted records leaves behind: values, and a plain set naming
    // them under `{namespace}:tag:{tag}` (more names than one batch pops).
    let b = backend("tag-legacy");
    let t = b.tier("c");
    let legacy = "tag-legacy:tag:team:7";
    let old: Vec<String> = (0..600).map(|i| format!("old{i}")).collect();
    for key in &old {
        t.set(key, vec![1], Some(Duration::from_secs(60)), &[])
            .await
            .unwrap();
    }
    let old_full: Vec<String> = old.iter().map(|k| b.redis_key("c", k)).collect();
    let mut sadd = vec!["SADD", legacy];
    sadd.extend(old_full.iter().map(String::as_str));
    assert_eq!(server().cli(&sadd), "600");
    server().cli(&["PEXPIRE", legacy, "60000"]);
    // This version tags values beside that set without tripping over its type.
    t.set(
        "new",
        vec![1],
        Some(Duration::from_secs(60)),
        &tags(&["team:7"]),
    )
    .await
    .unwrap();
    t.set("bystander", vec![1], None, &[]).await.unwrap();

    assert_eq!(b.delete_tag("team:7").await.unwrap(), 601);
    assert_eq!(existing(&old_full), 0);
    assert_eq!(t.get("new").await.unwrap(), None);
    assert!(t.get("bystander").await.unwrap().is_some());
    assert_eq!(server().cli(&["EXISTS", legacy, &b.tag_key("team:7")]), "0");
}

#[tokio::test]
async fn the_commands_docs_redis_md_lists_for_acls_are_enough() {
    // A user allowed exactly the commands `docs/redis.md` lists (standalone: no `CLUSTER`), on
    // the namespace's keys only. Commands a script calls are checked against the caller's ACL.
    const COMMANDS: &str = "GETRANGE SET UNLINK SCAN SPOP EVAL PING \
                            TIME ZREMRANGEBYSCORE ZSCORE ZADD ZRANGE PEXPIREAT PERSIST ZPOPMIN GET DEL";
    let mut setuser = vec!["ACL", "SETUSER", "tier-acl", "reset", "on", ">pw", "~acl:*"];
    let allowed: Vec<String> = COMMANDS
        .split_whitespace()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect();
    setuser.extend(allowed.iter().map(String::as_str));
    assert_eq!(server().cli(&setuser), "OK");
    let url = format!("redis://tier-acl:pw@127.0.0.1:{}", server().port());
    let b = RedisBackend::new(RedisConfig::standalone(url).namespace("acl"));
    let t = b.tier("c");
    let tag = tags(&["t"]);

    b.ping().await.unwrap();
    t.set("a", vec![1], Some(Duration::from_secs(60)), &tag)
        .await
        .unwrap();
    t.set("b", vec![1], None, &tag).await.unwrap();
    t.set("c", vec![1], Some(Duration::from_secs(60)), &[])
        .await
        .unwrap();
    assert_eq!(t.get("a").await.unwrap(), Some(vec![1]));
    assert!(t.delete("c").await.unwrap());
    let token = cache_core::remote::LockToken::random();
    assert_eq!(
        t.try_lock("k", token, Duration::from_secs(5)).await,
        Ok(cache_core::remote::LockAttempt::Acquired)
    );
    assert_eq!(t.unlock("k", token).await, Ok(true));
    assert_eq!(b.delete_tag("t").await.unwrap(), 2);
    t.set("d", vec![1], None, &[]).await.unwrap();
    assert_eq!(t.delete_pattern("*").await.unwrap(), 1);
    assert_eq!(t.clear().await.unwrap(), 0);
    assert_eq!(b.clear_all().await.unwrap(), 0);
    // And nothing outside the namespace.
    let outside = RedisBackend::new(
        RedisConfig::standalone(format!("redis://tier-acl:pw@127.0.0.1:{}", server().port()))
            .namespace("other"),
    );
    assert!(outside.tier("c").get("k").await.is_err());
}

#[tokio::test]
async fn large_tags_are_deleted_in_batches() {
    let b = backend("big-tag");
    let t = b.tier("c");
    let tag = tags(&["big"]);
    for i in 0..1_200 {
        t.set(&format!("k{i}"), vec![1], None, &tag).await.unwrap();
    }
    t.set("other", vec![1], None, &[]).await.unwrap();
    assert_eq!(b.delete_tag("big").await.unwrap(), 1_200);
    assert_eq!(
        t.clear().await.unwrap(),
        1,
        "only the untagged key was left"
    );
}

#[tokio::test]
async fn patterns_match_escaped_arguments_literally() {
    let b = backend("pattern");
    let t = b.tier("users");
    for key in ["user:*", "user:1", "user:2", "user:10", "other:1"] {
        t.set(key, key.as_bytes().to_vec(), None, &[])
            .await
            .unwrap();
    }
    b.tier("other-cache")
        .set("user:1", vec![1], None, &[])
        .await
        .unwrap();

    // `user:\*` is the escaped argument `*`: only the key `user:*`.
    assert_eq!(t.delete_pattern("user:\\*").await.unwrap(), 1);
    assert_eq!(t.get("user:*").await.unwrap(), None);
    assert!(t.get("user:1").await.unwrap().is_some());

    assert_eq!(t.delete_pattern("user:?").await.unwrap(), 2);
    assert!(t.get("user:10").await.unwrap().is_some());
    assert_eq!(t.delete_pattern("user:*").await.unwrap(), 1);
    assert!(t.get("other:1").await.unwrap().is_some());
    assert!(
        b.tier("other-cache").get("user:1").await.unwrap().is_some(),
        "patterns stay inside their cache"
    );
    assert_eq!(t.clear().await.unwrap(), 1);
    assert_eq!(t.get("other:1").await.unwrap(), None);
}

/// Keys for [`GLOB_TABLE`]: one- and two-byte keys, the glob metacharacters as keys, a
/// two-byte character.
const GLOB_KEYS: &[&str] = &[
    "", "a", "b", "ab", "abc", "a[", "a]", "a\\", "!", "^", "-", "]", "[", "\\", "é", "city:é",
    "city:e", "u:0", "u:1", "u:!", "x*y", "x?y", "xzy",
];

/// Patterns, and the keys of [`GLOB_KEYS`] each one matches: Redis `SCAN MATCH` semantics
/// (`stringmatchlen` in Redis's `util.c`), which the core's `Glob` must reproduce exactly, or the
/// memory tier and the backplane remove other keys than Redis does.
const GLOB_TABLE: &[(&str, &[&str])] = &[
    ("*", GLOB_KEYS),
    ("**a**", &["a", "ab", "abc", "a[", "a]", "a\\"]),
    ("a*", &["a", "ab", "abc", "a[", "a]", "a\\"]),
    ("*c", &["abc"]),
    // `?` and sets match one byte; `é` is two.
    ("?", &["a", "b", "!", "^", "-", "]", "[", "\\"]),
    ("??", &["ab", "a[", "a]", "a\\", "é"]),
    ("city:?", &["city:e"]),
    ("city:??", &["city:é"]),
    ("city:[é]?", &["city:é"]),
    ("[é]", &[]),
    ("[é][é]", &["é"]),
    ("x?y", &["x*y", "x?y", "xzy"]),
    // Only `^` negates; `!` is a member.
    ("u:[!0]", &["u:0", "u:!"]),
    ("u:[^0]", &["u:1", "u:!"]),
    ("u:[^!0]", &["u:1"]),
    ("[!]", &["!"]),
    ("[^^]", &["a", "b", "!", "-", "]", "[", "\\"]),
    // A `]` right after `[` or `[^` closes the set.
    ("[]", &[]),
    ("[^]", &["a", "b", "!", "^", "-", "]", "[", "\\"]),
    ("[^]]", &["a]"]),
    // Unclosed: the set runs to the end of the pattern.
    ("[", &[]),
    ("a[", &[]),
    ("*[", &[]),
    ("[^", &["a", "b", "!", "^", "-", "]", "[", "\\"]),
    ("a[bc", &["ab"]),
    // Ranges, in either order; the end may be `]` (`]` to `a`: `] ^ _ ` a`).
    ("[a-c]", &["a", "b"]),
    ("[c-a]", &["a", "b"]),
    ("[a-]", &["a", "^", "]"]),
    ("[-a]", &["a", "-"]),
    // Escapes, in and out of sets; an escaped byte never starts a range.
    ("[\\]]", &["]"]),
    ("[a\\-c]", &["a", "-"]),
    ("[\\a-c]", &["a", "-"]),
    ("a\\[", &["a["]),
    ("x\\*y", &["x*y"]),
    ("x\\?y", &["x?y"]),
    ("\\a", &["a"]),
    // A trailing `\` is itself.
    ("\\", &["\\"]),
    ("a\\", &["a\\"]),
];

#[tokio::test]
async fn glob_patterns_match_in_the_core_exactly_as_in_redis() {
    let b = backend("glob-table");
    let t = b.tier("c");
    let mut table: Vec<(&str, &[&str])> = GLOB_TABLE.to_vec();
    // Redis compares range bounds as C `char`, signed on x86-64: `a`-`é` is the range from 0xc3
    // (-61) up to `a`, so it holds `!` and not `b`. The server here runs on the test's machine.
    if cfg!(target_arch = "x86_64") {
        table.push(("[a-é]", &["a", "!", "^", "-", "]", "[", "\\"]));
    }
    let mut wrong = Vec::new();
    for (pattern, expected) in table {
        for key in GLOB_KEYS {
            t.set(key, vec![1], None, &[]).await.unwrap();
        }
        t.delete_pattern(pattern).await.unwrap();
        let glob = cache_core::Glob::new(pattern);
        for key in GLOB_KEYS {
            let in_redis = t.get(key).await.unwrap().is_none();
            let in_core = glob.matches(key);
            let promised = expected.contains(key);
            if (in_redis, in_core) != (promised, promised) {
                wrong.push(format!(
                    "{pattern:?} vs {key:?}: Redis {in_redis}, core {in_core}, table {promised}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn long_keys_and_control_characters_are_hashed() {
    let b = RedisBackend::new(
        RedisConfig::standalone(server().url())
            .namespace("hashed")
            .max_key_bytes(64),
    );
    let t = b.tier("c");
    let long = "x".repeat(65);
    let fits = "y".repeat(64);
    let control = "user:\n\t\u{7f}";
    for key in [long.as_str(), fits.as_str(), control] {
        t.set(key, key.as_bytes().to_vec(), None, &[])
            .await
            .unwrap();
        assert_eq!(t.get(key).await.unwrap().as_deref(), Some(key.as_bytes()));
    }
    for key in [long.as_str(), control] {
        let stored = b.redis_key("c", key);
        assert!(stored.starts_with("hashed:c:h:"), "{stored:?}");
        assert_eq!(stored.len(), "hashed:c:h:".len() + 32);
        assert_eq!(server().cli(&["EXISTS", &stored]), "1");
        assert_eq!(server().cli(&["EXISTS", &format!("hashed:c:{key}")]), "0");
    }
    assert_eq!(server().cli(&["EXISTS", &format!("hashed:c:{fits}")]), "1");
    assert_eq!(
        t.clear().await.unwrap(),
        3,
        "hashed keys are inside the cache"
    );
}

#[tokio::test]
async fn values_over_the_limit_are_refused() {
    let b = RedisBackend::new(
        RedisConfig::standalone(server().url())
            .namespace("too-large")
            .max_value_bytes(1024),
    );
    let t = b.tier("c");
    t.set("fits", vec![0; 1024], None, &[]).await.unwrap();
    assert_eq!(
        t.set("big", vec![0; 1025], None, &[]).await,
        Err(RemoteError::TooLarge {
            size: 1025,
            limit: 1024
        })
    );
    assert_eq!(t.get("big").await.unwrap(), None);
}

#[tokio::test]
async fn a_limit_of_usize_max_means_no_limit() {
    let b = RedisBackend::new(
        RedisConfig::standalone(server().url())
            .namespace("no-limit")
            .max_value_bytes(usize::MAX),
    );
    let t = b.tier("c");
    t.set("k", vec![7; 100], None, &[]).await.unwrap();
    assert_eq!(t.get("k").await, Ok(Some(vec![7; 100])));
    assert_eq!(t.get("absent").await, Ok(None));
}

#[tokio::test]
async fn ping_measures_a_round_trip_and_describe_names_the_server() {
    let b = backend("ping");
    let rtt = b.ping().await.unwrap();
    assert!(rtt < Duration::from_secs(1), "{rtt:?}");
    assert_eq!(
        b.describe(),
        format!("{} (standalone, namespace \"ping\")", server().url())
    );
}

#[tokio::test]
async fn ping_with_a_pool_times_the_connection_it_made() {
    // With several connections per server, PING used to go to the next one in turn, which had
    // still to connect: the "round trip" included a TCP (and TLS, AUTH) handshake.
    let own = RedisServer::start();
    let connections = || -> u64 {
        let info = own.cli(&["INFO", "stats"]);
        let line = info
            .lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .expect("INFO stats names the connections received");
        line.trim().parse().unwrap()
    };
    let before = connections();
    let b = RedisBackend::new(RedisConfig::standalone(own.url()).pool_size(4));
    bounded(b.ping()).await.unwrap();
    // `cli` itself is one connection, counted by the next INFO.
    assert_eq!(connections() - before, 1 + 1, "ping connected once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_spreads_concurrent_operations() {
    let b = Arc::new(RedisBackend::new(
        RedisConfig::standalone(server().url())
            .namespace("pool")
            .pool_size(3),
    ));
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let t = b.tier("c");
            tokio::spawn(async move {
                let key = format!("k{i}");
                t.set(&key, key.as_bytes().to_vec(), None, &[])
                    .await
                    .unwrap();
                assert_eq!(t.get(&key).await.unwrap().as_deref(), Some(key.as_bytes()));
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(b.clear_all().await.unwrap(), 64);
}

#[tokio::test]
async fn connects_lazily_and_serves_once_redis_appears() {
    let port = free_port(false);
    let started = Instant::now();
    let b = RedisBackend::new(
        RedisConfig::standalone(format!("redis://127.0.0.1:{port}")).namespace("lazy"),
    );
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "new() does not connect"
    );
    let t = b.tier("c");
    for _ in 0..3 {
        let started = Instant::now();
        let err = bounded(t.get("k")).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a refused connection fails fast: {err} after {:?}",
            started.elapsed()
        );
    }
    assert!(bounded(b.ping()).await.is_err());

    let _server = RedisServer::start_on_port(port, &[]);
    eventually(
        Duration::from_secs(5),
        "the same backend connects",
        || async { bounded(t.set("k", b"v".to_vec(), None, &[])).await.is_ok() },
    )
    .await;
    assert_eq!(t.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn recovers_after_the_server_restarts() {
    let mut server = RedisServer::start();
    let b = RedisBackend::new(RedisConfig::standalone(server.url()).namespace("restart"));
    let t = b.tier("c");
    t.set("k", b"v".to_vec(), None, &[]).await.unwrap();

    server.stop();
    for _ in 0..3 {
        assert!(bounded(t.get("k")).await.is_err(), "server is down");
        assert!(bounded(t.set("k", vec![1], None, &[])).await.is_err());
    }

    server.restart();
    eventually(
        Duration::from_secs(10),
        "operations succeed again",
        || async {
            bounded(t.set("k", b"again".to_vec(), None, &[]))
                .await
                .is_ok()
        },
    )
    .await;
    assert_eq!(t.get("k").await.unwrap().as_deref(), Some(&b"again"[..]));
}

#[tokio::test]
async fn a_paused_server_does_not_hang_operations() {
    let mut server = RedisServer::start();
    let b = RedisBackend::new(
        RedisConfig::standalone(server.url())
            .namespace("paused")
            .response_timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(500)),
    );
    let t = b.tier("c");
    t.set("k", b"v".to_vec(), None, &[]).await.unwrap();

    server.pause();
    for _ in 0..2 {
        let started = Instant::now();
        match tokio::time::timeout(BOUND, t.get("k")).await {
            Ok(Ok(v)) => panic!("a paused server answered {v:?}"),
            Ok(Err(e)) => assert!(
                matches!(e, RemoteError::Timeout | RemoteError::Backend(_)),
                "{e:?}"
            ),
            Err(_) => panic!("the connection's response timeout did not fire within {BOUND:?}"),
        }
        assert!(started.elapsed() < BOUND);
    }

    server.resume();
    eventually(
        Duration::from_secs(10),
        "operations succeed after resume",
        || async { matches!(bounded(t.get("k")).await, Ok(Some(_))) },
    )
    .await;
}

#[tokio::test]
async fn a_black_hole_times_out() {
    let hole = BlackHole::start();
    let b = RedisBackend::new(
        RedisConfig::standalone(hole.url())
            .namespace("hole")
            .connect_timeout(Duration::from_millis(300))
            .response_timeout(Duration::from_millis(300)),
    );
    let t = b.tier("c");
    for _ in 0..2 {
        let started = Instant::now();
        let r = tokio::time::timeout(BOUND, t.set("k", vec![1], None, &[])).await;
        assert!(matches!(r, Ok(Err(_))), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn passwords_never_show() {
    let server = RedisServer::start_with_args(&["--requirepass", "right-pw-5521"]);
    let port = server.port();

    let wrong = RedisBackend::new(
        RedisConfig::standalone(format!("redis://:wrong-pw-7734@127.0.0.1:{port}"))
            .namespace("auth"),
    );
    let err = bounded(wrong.tier("c").get("k")).await.unwrap_err();
    let shown = [
        err.to_string(),
        format!("{err:?}"),
        wrong.describe(),
        format!("{wrong:?}"),
        format!("{:?}", wrong.config()),
        format!("{:?}", wrong.redis_tier("c")),
    ];
    for text in &shown {
        assert!(!text.contains("wrong-pw-7734"), "password shown: {text}");
    }
    assert!(
        wrong.describe().contains(":***@127.0.0.1"),
        "{}",
        wrong.describe()
    );
    let err = bounded(wrong.ping()).await.unwrap_err();
    assert!(!err.to_string().contains("wrong-pw-7734"), "{err}");

    // A query-string password (the `unix://` form) is redacted too.
    let query = RedisBackend::new(RedisConfig::standalone(
        "unix:///tmp/no-such.sock?db=1&pass=query-pw-9911",
    ));
    assert!(
        !query.describe().contains("query-pw-9911"),
        "{}",
        query.describe()
    );
    let err = bounded(query.tier("c").get("k")).await.unwrap_err();
    assert!(!err.to_string().contains("query-pw-9911"), "{err}");

    // A raw `?` in a password does not start a query that would show the rest of it.
    let raw = RedisBackend::new(RedisConfig::standalone(format!(
        "redis://app:raw?pw-6613@127.0.0.1:{port}"
    )));
    let err = bounded(raw.tier("c").get("k")).await.unwrap_err();
    for text in [
        err.to_string(),
        raw.describe(),
        format!("{raw:?}"),
        format!("{:?}", raw.config()),
    ] {
        assert!(!text.contains("pw-6613"), "password shown: {text}");
    }
    assert!(
        raw.describe().contains("app:***@127.0.0.1"),
        "{}",
        raw.describe()
    );

    // The right password works.
    let right = RedisBackend::new(
        RedisConfig::standalone(format!("redis://:right-pw-5521@127.0.0.1:{port}"))
            .namespace("auth"),
    );
    let t = right.tier("c");
    t.set("k", b"v".to_vec(), None, &[]).await.unwrap();
    assert_eq!(t.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

/// Uses `b` on three runtimes in turn, the way `#[tokio::test]`s share a global backend.
fn on_successive_runtimes(b: &RedisBackend) {
    for round in 0..3u8 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let t = b.tier("c");
            // The first operation on a new runtime already succeeds.
            t.set("k", vec![round], None, &[]).await.unwrap();
            assert_eq!(t.get("k").await.unwrap(), Some(vec![round]));
        });
    }
}

#[test]
fn a_backend_serves_every_runtime_that_uses_it() {
    on_successive_runtimes(&backend("runtimes"));
}

#[tokio::test]
async fn an_invalidation_finishes_when_the_caller_stops_waiting() {
    let b = backend("detached");
    let t = b.tier("c");
    let tag = tags(&["many"]);
    for i in 0..2_000 {
        t.set(&format!("k{i}"), vec![1], None, &tag).await.unwrap();
    }
    // The core's timeout gives up long before 2,000 keys are unlinked...
    let _ = tokio::time::timeout(Duration::from_micros(100), b.delete_tag("many")).await;
    // ...but the invalidation carries on to the end.
    eventually(
        Duration::from_secs(5),
        "every tagged key is removed",
        || async {
            server()
                .cli(&["--scan", "--pattern", "detached:*"])
                .is_empty()
        },
    )
    .await;
    assert_eq!(t.get("k1999").await.unwrap(), None);
}

/// A connection attempt refused by the server itself (not by the network) is retried by a later
/// operation: a password rotated on the server after the application's deploy, say.
#[tokio::test]
async fn a_refused_authentication_is_retried_once_the_server_accepts_it() {
    let server = RedisServer::start_with_args(&["--requirepass", "old-pw-4410"]);
    let port = server.port();
    let b = RedisBackend::new(
        RedisConfig::standalone(format!("redis://:new-pw-4410@127.0.0.1:{port}"))
            .namespace("rotated"),
    );
    let t = b.tier("c");
    assert!(bounded(t.get("k")).await.is_err(), "the server refuses it");

    // The server now takes the application's password.
    server.cli(&[
        "-a",
        "old-pw-4410",
        "--no-auth-warning",
        "CONFIG",
        "SET",
        "requirepass",
        "new-pw-4410",
    ]);
    eventually(
        Duration::from_secs(5),
        "operations succeed with the accepted password",
        || async { bounded(t.set("k", b"v".to_vec(), None, &[])).await.is_ok() },
    )
    .await;
    assert_eq!(t.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

/// Something other than Redis on the port (here an HTTP server, answering every connection with
/// a 400 and keeping it open) fails each operation fast; once Redis has the port, the same
/// backend connects.
#[tokio::test]
async fn another_protocol_on_the_port_is_retried_once_redis_answers_there() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};

    let port = free_port(false);
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let http = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let mut open = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
                        open.push(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
    });
    let b = RedisBackend::new(
        RedisConfig::standalone(format!("redis://127.0.0.1:{port}")).namespace("http"),
    );
    let t = b.tier("c");
    for _ in 0..2 {
        let started = Instant::now();
        assert!(bounded(t.get("k")).await.is_err(), "not Redis");
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    stop.store(true, Ordering::Relaxed);
    http.join().unwrap();
    let _server = RedisServer::start_on_port(port, &[]);
    eventually(
        Duration::from_secs(5),
        "operations succeed once Redis has the port",
        || async { bounded(t.set("k", b"v".to_vec(), None, &[])).await.is_ok() },
    )
    .await;
    assert_eq!(t.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

/// A connection that goes silent for good (a middlebox dropped its state: no FIN, no RST, and
/// TCP would retransmit for many minutes) is given up once a reply is later than
/// `response_timeout`, although the core's shorter timeout stops waiting for each operation
/// first; the next operations connect again.
#[tokio::test]
async fn a_connection_gone_silent_is_replaced_after_the_response_timeout() {
    use tests::fault_proxy::FaultProxy;

    // The proxy owns a runtime: started and dropped off this one's threads.
    let port = server().port();
    let proxy = tokio::task::spawn_blocking(move || FaultProxy::start(port))
        .await
        .unwrap();
    let b = RedisBackend::new(
        RedisConfig::standalone(proxy.url())
            .namespace("stranded")
            .connect_timeout(Duration::from_millis(300))
            .response_timeout(Duration::from_millis(300)),
    );
    let t = b.tier("c");
    t.set("k", b"v".to_vec(), None, &[]).await.unwrap();

    proxy.strand();
    // Each operation bounded as the core bounds it (100 ms by default).
    let as_the_core_calls = || tokio::time::timeout(Duration::from_millis(100), t.get("k"));
    assert!(
        as_the_core_calls().await.is_err(),
        "the stranded connection answers nothing"
    );
    eventually(
        Duration::from_secs(5),
        "an operation succeeds on a new connection",
        || async { matches!(as_the_core_calls().await, Ok(Ok(Some(_)))) },
    )
    .await;
    assert_eq!(proxy.counts().accepted, 2, "one new connection");
    tokio::task::spawn_blocking(move || drop(proxy))
        .await
        .unwrap();
}

/// A failover behind a stable address (a DNS name or a virtual IP that now leads to the promoted
/// replica) leaves the open connection on the former master, now a replica, which refuses every
/// write (`READONLY`). That connection is dropped, and the next operation reaches the new master.
#[tokio::test]
async fn a_connection_to_a_demoted_master_is_replaced() {
    use tests::fault_proxy::FaultProxy;

    let old = RedisServer::start();
    let new = RedisServer::start();
    // The proxy owns a runtime: started and dropped off this one's threads.
    let port = old.port();
    let proxy = tokio::task::spawn_blocking(move || FaultProxy::start(port))
        .await
        .unwrap();
    let b = RedisBackend::new(RedisConfig::standalone(proxy.url()).namespace("failover"));
    let t = b.tier("c");
    t.set("k", b"v1".to_vec(), None, &[]).await.unwrap();

    // The failover: `new` is the master, `old` its replica, the address leads to `new`.
    old.cli(&["REPLICAOF", "127.0.0.1", &new.port().to_string()]);
    proxy.set_upstream(new.port());
    let err = bounded(t.set("k", b"v2".to_vec(), None, &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read only replica"), "{err}");
    eventually(
        Duration::from_secs(5),
        "a write reaches the new master",
        || async { bounded(t.set("k", b"v2".to_vec(), None, &[])).await.is_ok() },
    )
    .await;
    assert_eq!(new.cli(&["EXISTS", &b.redis_key("c", "k")]), "1");
    tokio::task::spawn_blocking(move || drop(proxy))
        .await
        .unwrap();
}

/// A connection attempt that failed after every operation waiting for it had given up (the
/// core's timeout is shorter than `connect_timeout`) is not the answer of the next operation,
/// however much later it comes: that one connects again.
#[tokio::test]
async fn an_attempt_that_failed_unwatched_is_not_handed_to_a_later_operation() {
    use std::io::Read;

    let port = free_port(false);
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    // A server that accepts one connection, answers nothing, and returns once the client gave
    // the connection up (true), or after 10 s (false). The port is free again after it.
    let silent = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 256];
        loop {
            match conn.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    });
    let b = RedisBackend::new(
        RedisConfig::standalone(format!("redis://127.0.0.1:{port}"))
            .namespace("unwatched")
            .connect_timeout(Duration::from_millis(300)),
    );
    let t = b.tier("c");
    // The caller gives up before the attempt does.
    let gave_up = tokio::time::timeout(Duration::from_millis(50), t.get("k")).await;
    assert!(gave_up.is_err(), "{gave_up:?}");
    let attempt_ended = tokio::task::spawn_blocking(move || silent.join().unwrap())
        .await
        .unwrap();
    assert!(attempt_ended, "the attempt gave its connection up");

    // Redis answers on the port now.
    let _server = RedisServer::start_on_port(port, &[]);
    let read = bounded(t.get("k")).await;
    assert!(matches!(read, Ok(None)), "{read:?}");
}

/// How many connections `server` has accepted since it started.
fn connections_received(server: &RedisServer) -> u64 {
    server
        .cli(&["INFO", "stats"])
        .lines()
        .find_map(|l| l.trim().strip_prefix("total_connections_received:"))
        .and_then(|n| n.parse().ok())
        .expect("INFO stats lists total_connections_received")
}

/// A server that is (still) a replica refuses every write with `READONLY`. Its connection is
/// replaced in case the address now leads elsewhere (see
/// `a_connection_to_a_demoted_master_is_replaced`), but while it does not (a DNS name not moved
/// yet), writes do not each make a new connection.
#[tokio::test]
async fn writes_refused_by_a_replica_do_not_each_reconnect() {
    let master = RedisServer::start();
    let replica = RedisServer::start();
    replica.cli(&["REPLICAOF", "127.0.0.1", &master.port().to_string()]);
    let b = RedisBackend::new(RedisConfig::standalone(replica.url()).namespace("replica"));
    let t = b.tier("c");
    assert_eq!(bounded(t.get("k")).await.unwrap(), None); // connected
    let before = connections_received(&replica);
    let started = Instant::now();
    for _ in 0..50 {
        let refused = bounded(t.set("k", b"v".to_vec(), None, &[])).await;
        assert!(
            matches!(&refused, Err(e) if e.to_string().contains("read only replica")),
            "{refused:?}"
        );
        assert_eq!(bounded(t.get("k")).await.unwrap(), None);
    }
    // Less the connection of this `INFO` itself.
    let reconnects = connections_received(&replica) - before - 1;
    // At most one a second (the loop takes a few milliseconds on an idle machine).
    let allowed = 1 + started.elapsed().as_secs();
    assert!(
        reconnects <= allowed,
        "{reconnects} new connections for 50 refused writes in {:?}",
        started.elapsed()
    );
}
