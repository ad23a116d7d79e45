//! Cache keys: rendering, escaping and hashing.
//!
//! A key has two forms. The *logical* key is the string the user wrote (`user:42`): stable across
//! processes and releases, used for Redis, tags, patterns and logs. The *lookup* key is a 64-bit
//! hash of exactly those bytes, used by the memory tier. A key is rendered into a stack buffer
//! ([`KeyBuf`], 128 bytes inline) so that a hit allocates nothing; the stored entry keeps the
//! logical key and a hit compares the bytes, so a hash collision can never return another key's
//! value.

mod escape;
mod glob;
mod render;
pub(crate) mod template;

pub use escape::{escape_glob, escape_key_part};
pub use glob::Glob;
pub use render::{
    ArgBytes, Int, IntProbe, IntViaDisplay, IntViaPrimitive, KeyArgs, KeyArgsTuple, KeyBuf, KeyPart,
};

/// The memory tier's lookup hash of a logical key.
///
/// Any string renders to the same hash whether it came from a macro's template or from
/// [`Cache::delete`](crate::Cache::delete), which is what lets programmatic invalidation find
/// macro-made entries.
#[inline]
pub(crate) fn lookup_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// A stable 128-bit hash, specified by XXH3 and therefore the same in every process and release.
pub(crate) fn stable_hash128(bytes: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(bytes)
}

/// A stable 64-bit hash, used by the `{arg:hash}` formatter.
pub(crate) fn stable_hash64(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}
