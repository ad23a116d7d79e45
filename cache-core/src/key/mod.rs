//! Cache keys: rendering, escaping and hashing.
//!
//! A key has two forms. The *logical* key is the string the user wrote (`user:42`): stable across
//! processes and releases, used for Redis, tags, patterns and logs. The *lookup* key is a 64-bit
//! hash of exactly those bytes, used by the memory tier. A key is rendered into a stack buffer
//! ([`KeyBuf`], 128 bytes inline) so that a hit allocates nothing; the stored entry keeps the
//! logical key and a hit compares the bytes, so a hash collision can never return another key's
//! value.

use std::sync::LazyLock;

mod args;
mod escape;
mod glob;
mod render;
pub(crate) mod template;

pub use escape::{escape_glob, escape_key_part};
pub use glob::Glob;
pub use render::{
    ArgBytes, Int, IntProbe, IntViaDisplay, IntViaPrimitive, KeyArgs, KeyArgsTuple, KeyBuf,
    KeyPart, StrProbe, StrViaDisplay, StrViaStr,
};

/// The memory tier's lookup hash of a logical key.
///
/// Any string renders to the same hash whether it came from a macro's template or from
/// [`Cache::delete`](crate::Cache::delete), which is what lets programmatic invalidation find
/// macro-made entries.
///
/// Seeded once per process ([`LOOKUP_SEED`]): the memory tier's maps, its single-flight registry
/// and its eviction ghosts use this hash as it is, without hashing it again, so an unseeded
/// function would let whoever chooses keys (a user id in a URL) compute keys whose hashes share
/// their low bits and pile them into one bucket (hash flooding). The hash never leaves the
/// process (the remote envelope hashes keys with its own, stable function), so nothing depends
/// on its value across processes or restarts.
#[inline]
pub(crate) fn lookup_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(key, *LOOKUP_SEED)
}

/// The per-process seed of [`lookup_hash`], from the standard library's randomly seeded hasher.
static LOOKUP_SEED: LazyLock<u64> = LazyLock::new(|| {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
});

/// A stable 128-bit hash, specified by XXH3 and therefore the same in every process and release.
pub(crate) fn stable_hash128(bytes: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(bytes)
}

/// A stable 64-bit hash, used by the `{arg:hash}` formatter.
pub(crate) fn stable_hash64(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookup_hash_is_seeded_and_stable_within_the_process() {
        let key = b"user:42";
        assert_eq!(lookup_hash(key), lookup_hash(key));
        // Unseeded, the memory tier's buckets would be predictable from the keys alone (hash
        // flooding). Equal by chance with probability 2^-64.
        assert_ne!(lookup_hash(key), xxhash_rust::xxh3::xxh3_64(key));
        assert_ne!(lookup_hash(key), stable_hash64(key));
    }
}
