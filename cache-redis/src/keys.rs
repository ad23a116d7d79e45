//! The key layout in Redis.
//!
//! ```text
//! {namespace}:{cache}:{key}     a value (a string holding the core's envelope)
//! {namespace}:%tag:{tag}        a tag's record: a sorted set of the full value keys carrying
//!                               the tag, each scored by its value's expiry
//! {namespace}:lock:{cache}:{key} the distributed single-flight lock of a value (its owner's token)
//! {namespace}:tag:{tag}         a tag's set as versions before the sorted records wrote it
//!                               (only drained now, see `Layout::legacy_tag_key`)
//! ```
//!
//! The namespace and the cache name are *segments*: a `:` or `%` in them is percent-encoded, and
//! a cache named exactly `tag` or `lock` is written `%74ag` or `%6Cock`, so no cache's keys can
//! fall under another cache's, another namespace's, the tag records', the legacy tag sets' or the
//! locks' prefix (`%tag` is no segment of a name: a name's `%` is always written `%25`). Locks
//! live outside their cache's prefix so that pattern invalidation and clearing a cache, which scan
//! that prefix for values, never see them; clearing the whole namespace does delete them, which
//! is harmless (a holder's compare-and-delete then finds nothing, and a waiter may take a fresh
//! lock and compute, as after any clear). Logical keys (already escaped by the
//! core) are written as they are unless they are too long or contain control characters; those
//! become `h:` + the hex XXH3-128 of the key.

use std::borrow::Cow;
use std::fmt::Write;

use cache_core::escape_glob;

/// The segment of the tag sets older versions wrote (plain sets, never trimmed). Still reserved:
/// such sets may outlive an upgrade, and a cache named `tag` keeps its escaped name.
const TAG_SEGMENT: &str = "tag";
/// The segment that holds tag records (sorted sets). Not `tag`, so that an upgraded instance
/// never meets an older version's plain set under a record's name (`WRONGTYPE`), and one no
/// cache or namespace name can produce (their `%` is written `%25`).
const TAG_RECORD_SEGMENT: &str = "%tag";
/// The segment that holds distributed single-flight locks.
const LOCK_SEGMENT: &str = "lock";

/// A namespace or cache name as written in keys.
pub(crate) fn segment(name: &str) -> Cow<'_, str> {
    if name == TAG_SEGMENT {
        return Cow::Borrowed("%74ag");
    }
    if name == LOCK_SEGMENT {
        return Cow::Borrowed("%6Cock");
    }
    if !name.bytes().any(|b| b == b':' || b == b'%') {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        match c {
            ':' => out.push_str("%3A"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether a logical key is sent hashed rather than as it is.
pub(crate) fn needs_hash(key: &str, max_key_bytes: usize) -> bool {
    key.len() > max_key_bytes || key.chars().any(char::is_control)
}

/// `h:` + 32 hex digits of the key's XXH3-128.
pub(crate) fn hashed(key: &str) -> String {
    let mut out = String::with_capacity(34);
    let _ = write!(
        out,
        "h:{:032x}",
        xxhash_rust::xxh3::xxh3_128(key.as_bytes())
    );
    out
}

/// The namespace-level layout shared by a backend's caches.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// `{namespace}:`
    ns_prefix: String,
    max_key_bytes: usize,
}

impl Layout {
    pub(crate) fn new(namespace: &str, max_key_bytes: usize) -> Self {
        Layout {
            ns_prefix: format!("{}:", segment(namespace)),
            max_key_bytes,
        }
    }

    /// `{namespace}:%tag:{tag}`, the tag's record (a tag too long or with control characters is
    /// hashed like a key).
    pub(crate) fn tag_key(&self, tag: &str) -> String {
        self.key_of_tag(TAG_RECORD_SEGMENT, tag)
    }

    /// `{namespace}:tag:{tag}`, where versions before the sorted records kept the tag's plain
    /// set. Nothing writes it any more; invalidating the tag drains it, so that values such
    /// versions tagged are still removed (see `docs/redis.md` for when that can stop).
    pub(crate) fn legacy_tag_key(&self, tag: &str) -> String {
        self.key_of_tag(TAG_SEGMENT, tag)
    }

    fn key_of_tag(&self, segment: &str, tag: &str) -> String {
        let tag = if needs_hash(tag, self.max_key_bytes) {
            Cow::Owned(hashed(tag))
        } else {
            Cow::Borrowed(tag)
        };
        format!("{}{segment}:{tag}", self.ns_prefix)
    }

    /// The glob matching every key of the namespace (values of every cache, tag records and
    /// legacy tag sets, locks).
    pub(crate) fn namespace_glob(&self) -> String {
        format!("{}*", escape_glob(&self.ns_prefix))
    }

    /// The layout of one cache.
    pub(crate) fn cache(&self, cache: &str) -> CacheLayout {
        let cache = segment(cache);
        let prefix = format!("{}{cache}:", self.ns_prefix);
        CacheLayout {
            glob_prefix: escape_glob(&prefix),
            prefix,
            lock_prefix: format!("{}{LOCK_SEGMENT}:{cache}:", self.ns_prefix),
            max_key_bytes: self.max_key_bytes,
        }
    }
}

/// The layout of one named cache.
#[derive(Clone, Debug)]
pub(crate) struct CacheLayout {
    /// `{namespace}:{cache}:`
    prefix: String,
    /// The prefix, glob-escaped.
    glob_prefix: String,
    /// `{namespace}:lock:{cache}:`
    lock_prefix: String,
    max_key_bytes: usize,
}

impl CacheLayout {
    /// The Redis key of a logical key.
    pub(crate) fn value_key(&self, key: &str) -> String {
        self.key_under(&self.prefix, key)
    }

    /// The Redis key of a logical key's single-flight lock (the key part written exactly as in
    /// its value key, hashed when that is).
    pub(crate) fn lock_key(&self, key: &str) -> String {
        self.key_under(&self.lock_prefix, key)
    }

    fn key_under(&self, prefix: &str, key: &str) -> String {
        let mut out = String::with_capacity(prefix.len() + key.len().min(self.max_key_bytes));
        out.push_str(prefix);
        if needs_hash(key, self.max_key_bytes) {
            out.push_str(&hashed(key));
        } else {
            out.push_str(key);
        }
        out
    }

    /// The Redis key of a logical key as a command argument, written straight into the
    /// command's buffer (no intermediate `String` on the read path).
    pub(crate) fn value_key_arg<'a>(&'a self, key: &'a str) -> ValueKeyArg<'a> {
        ValueKeyArg { layout: self, key }
    }

    /// A command `name` with one argument, the Redis key of `key`, allocated at its final size.
    pub(crate) fn key_command(&self, name: &str, key: &str) -> redis::Cmd {
        let arg = self.value_key_arg(key);
        let mut cmd = redis::Cmd::with_capacity(2, name.len() + arg.len());
        cmd.arg(name).arg(arg);
        cmd
    }

    /// The glob for a pattern over this cache's logical keys. The pattern is the caller's glob
    /// (its argument values already escaped); the prefix is escaped here.
    pub(crate) fn pattern(&self, pattern: &str) -> String {
        let mut out = String::with_capacity(self.glob_prefix.len() + pattern.len());
        out.push_str(&self.glob_prefix);
        out.push_str(pattern);
        out
    }

    /// The glob matching every key of this cache.
    pub(crate) fn all(&self) -> String {
        self.pattern("*")
    }
}

/// See [`CacheLayout::value_key_arg`].
pub(crate) struct ValueKeyArg<'a> {
    layout: &'a CacheLayout,
    key: &'a str,
}

impl ValueKeyArg<'_> {
    fn hashed(&self) -> bool {
        needs_hash(self.key, self.layout.max_key_bytes)
    }

    /// The length of the key in bytes.
    fn len(&self) -> usize {
        self.layout.prefix.len() + if self.hashed() { 34 } else { self.key.len() }
    }
}

impl redis::ToRedisArgs for ValueKeyArg<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's buffer cannot fail.
        let _ = arg.write_all(self.layout.prefix.as_bytes());
        let _ = if self.hashed() {
            write!(
                arg,
                "h:{:032x}",
                xxhash_rust::xxh3::xxh3_128(self.key.as_bytes())
            )
        } else {
            arg.write_all(self.key.as_bytes())
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_argument_is_the_value_key() {
        let c = Layout::new("n", 16).cache("c");
        for key in ["user:42", "", "0123456789abcdefg", "a\nb"] {
            let cmd = c.key_command("GET", key);
            let args: Vec<Vec<u8>> = cmd
                .args_iter()
                .map(|a| match a {
                    redis::Arg::Simple(b) => b.to_vec(),
                    _ => panic!("a plain argument"),
                })
                .collect();
            assert_eq!(
                args,
                [b"GET".to_vec(), c.value_key(key).into_bytes()],
                "{key:?}"
            );
            assert_eq!(c.value_key_arg(key).len(), c.value_key(key).len());
        }
    }

    #[test]
    fn layout() {
        let l = Layout::new("app", 512);
        let users = l.cache("users");
        assert_eq!(users.value_key("user:42"), "app:users:user:42");
        assert_eq!(l.tag_key("team:7"), "app:%tag:team:7");
        assert_eq!(l.legacy_tag_key("team:7"), "app:tag:team:7");
        assert_eq!(users.pattern("user:\\*"), "app:users:user:\\*");
        assert_eq!(users.all(), "app:users:*");
        assert_eq!(users.lock_key("user:42"), "app:lock:users:user:42");
        assert_eq!(l.cache("a:b").lock_key("k"), "app:lock:a%3Ab:k");
        assert_eq!(l.namespace_glob(), "app:*");
    }

    #[test]
    fn segments_cannot_collide() {
        assert_eq!(segment("a:b"), "a%3Ab");
        assert_eq!(segment("100%"), "100%25");
        assert_eq!(segment("%3A"), "%253A");
        assert_eq!(segment("tag"), "%74ag");
        assert_eq!(segment("tags"), "tags");
        assert_eq!(segment("lock"), "%6Cock");
        assert_eq!(segment("%6Cock"), "%256Cock");
        let l = Layout::new("app", 512);
        // A cache named `tag` never writes into the legacy tag sets' space, one named `lock`
        // never into the locks', one named `%tag` never into the tag records'.
        assert_eq!(l.cache("tag").value_key("x"), "app:%74ag:x");
        assert_eq!(l.cache("%tag").value_key("x"), "app:%25tag:x");
        assert_ne!(l.cache("%tag").value_key("x"), l.tag_key("x"));
        assert_eq!(l.cache("lock").value_key("c:k"), "app:%6Cock:c:k");
        assert_ne!(l.cache("lock").value_key("c:k"), l.cache("c").lock_key("k"));
        // A namespace containing `:` is not under another namespace's prefix.
        assert_eq!(
            Layout::new("app:x", 512).cache("c").value_key("k"),
            "app%3Ax:c:k"
        );
    }

    #[test]
    fn glob_metacharacters_in_names_are_escaped() {
        let l = Layout::new("a*b", 512);
        assert_eq!(l.namespace_glob(), "a\\*b:*");
        assert_eq!(l.cache("c?[x]").all(), "a\\*b:c\\?\\[x\\]:*");
    }

    #[test]
    fn long_and_control_keys_are_hashed() {
        let c = Layout::new("n", 16).cache("c");
        assert_eq!(c.value_key("0123456789abcdef"), "n:c:0123456789abcdef");
        let long = c.value_key("0123456789abcdefg");
        assert!(long.starts_with("n:c:h:"), "{long}");
        assert_eq!(long.len(), "n:c:h:".len() + 32);
        let ctl = c.value_key("a\nb");
        assert!(ctl.starts_with("n:c:h:"));
        assert_ne!(ctl, c.value_key("a\rb"));
        assert_eq!(ctl, c.value_key("a\nb"), "stable");
        assert_eq!(
            c.lock_key("0123456789abcdefg"),
            long.replace("n:c:", "n:lock:c:")
        );
        let l = Layout::new("n", 16);
        assert!(l.tag_key("t\u{0}").starts_with("n:%tag:h:"));
        assert!(l.legacy_tag_key("t\u{0}").starts_with("n:tag:h:"));
    }
}
