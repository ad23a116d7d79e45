//! Typed access to the remote tier: a [`Codec`] turns a value into envelope bytes and back.
//!
//! Values cached in memory need only `Clone`; values that also go to a remote tier need serde.
//! The programmatic API asks for [`Storable`] outright. The macros do not force serde on
//! memory-only users: they ask the compiler, with autoref specialization, whether the value type
//! is serializable ([`CodecProbe`]); a value that is not stays in memory, and a cache configured
//! with a remote tier logs once that it cannot send it there.

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::envelope::{self, DecodeError, Meta};
use crate::outcome::{CacheValue, Strategy};

/// A value that every tier can hold: cloneable, shareable, and serializable.
///
/// ```
/// use cache_core::remote::codec::Storable;
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct User { id: u64, name: String }
///
/// fn storable<T: Storable>() {}
/// storable::<User>();
/// storable::<Vec<String>>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in a cache that may be remote",
    label = "needs `Clone + Send + Sync + Serialize + DeserializeOwned + 'static`",
    note = "derive `Clone, serde::Serialize, serde::Deserialize` for `{Self}`"
)]
pub trait Storable: CacheValue + Serialize + DeserializeOwned {}

impl<T: CacheValue + Serialize + DeserializeOwned> Storable for T {}

/// Encodes and decodes one value type for the remote tier.
///
/// ```
/// use cache_core::remote::codec::{Codec, CodecProbe, ViaNothing, ViaSerde};
///
/// let codec: Option<Codec<u64>> = (&&CodecProbe::<u64>::new()).codec();
/// assert!(codec.is_some());
/// ```
pub struct Codec<T> {
    encode: EncodeFn<T>,
    decode: DecodeFn<T>,
}

type EncodeFn<T> = fn(&str, &T, Meta, usize) -> Result<Vec<u8>, String>;
type DecodeFn<T> = fn(&str, &[u8], u64) -> Result<(T, Meta), DecodeError>;

impl<T> Clone for Codec<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Codec<T> {}

impl<T> std::fmt::Debug for Codec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codec")
    }
}

impl<T: Storable> Codec<T> {
    /// The serde codec (named MessagePack inside the envelope).
    ///
    /// ```
    /// use cache_core::remote::codec::Codec;
    ///
    /// let codec = Codec::<String>::serde();
    /// # drop(codec);
    /// ```
    pub fn serde() -> Self {
        Codec {
            encode: |key, value, meta, compress_above| {
                envelope::encode(key, value, meta, compress_above).map_err(|e| e.to_string())
            },
            decode: |key, bytes, now| envelope::decode(key, bytes, now),
        }
    }
}

impl<T> Codec<T> {
    pub(crate) fn encode(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
        recompute: Duration,
    ) -> Result<Vec<u8>, String> {
        let meta = Meta {
            expires_at_unix_ms: ttl
                // Saturating: `as u64` of a TTL past 2^64 ms kept its low bits, which could put
                // the expiry in the past and make the value unreadable on arrival.
                .map(|t| {
                    let ttl_ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
                    envelope::unix_ms_now().saturating_add(ttl_ms)
                }),
            recompute_ms: recompute.as_millis().min(u128::from(u32::MAX)) as u32,
        };
        (self.encode)(key, value, meta, envelope::DEFAULT_COMPRESS_ABOVE)
    }

    pub(crate) fn decode(&self, key: &str, bytes: &[u8]) -> Result<(T, Meta), DecodeError> {
        (self.decode)(key, bytes, envelope::unix_ms_now())
    }

    /// [`Codec::decode`] that also accepts a value past its logical expiry (kept in the backend
    /// for a stale or fail-safe window); the caller reads the expiry from the [`Meta`].
    pub(crate) fn decode_kept(&self, key: &str, bytes: &[u8]) -> Result<(T, Meta), DecodeError> {
        (self.decode)(key, bytes, 0)
    }
}

/// Asks the compiler whether `T` is [`Storable`]; see the module docs.
///
/// ```
/// use cache_core::remote::codec::{CodecProbe, ViaNothing, ViaSerde};
///
/// struct Opaque;
/// assert!((&&CodecProbe::<String>::new()).codec().is_some());
/// assert!((&&CodecProbe::<Opaque>::new()).codec().is_none());
/// ```
#[derive(Debug)]
pub struct CodecProbe<T>(PhantomData<fn() -> T>);

impl<T> CodecProbe<T> {
    /// A probe for `T`.
    ///
    /// ```
    /// use cache_core::remote::codec::{CodecProbe, ViaNothing, ViaSerde};
    ///
    /// assert!((&&CodecProbe::<Vec<u8>>::new()).codec().is_some());
    /// ```
    pub const fn new() -> Self {
        CodecProbe(PhantomData)
    }

    /// The probe for the value type of strategy `S` over return type `R`.
    pub fn of<R, S: Strategy<R, Value = T>>(_: &S) -> Self {
        CodecProbe(PhantomData)
    }
}

impl<T> Default for CodecProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Finds the type a return type `R` caches (`T` of `Result<T, E>` and `Option<T>`, else `R`) and
/// hands back the [`CodecProbe`] for it, without any bound that could fail: inherent methods on
/// `ValueOf<Result<..>>` and `ValueOf<Option<..>>` win over [`ValueOfPlain`].
///
/// ```
/// use cache_core::remote::codec::{ValueOf, ValueOfPlain, ViaNothing, ViaSerde};
///
/// struct Opaque;
/// // The `u64` of a `Result<u64, _>` can go remote; a plain `Opaque` cannot.
/// assert!((&&ValueOf::<Result<u64, Opaque>>::new().probe()).codec().is_some());
/// assert!((&&ValueOf::<Opaque>::new().probe()).codec().is_none());
/// ```
#[derive(Debug)]
pub struct ValueOf<R>(PhantomData<fn() -> R>);

impl<R> ValueOf<R> {
    /// The finder for `R`.
    ///
    /// ```
    /// use cache_core::remote::codec::{ValueOf, ViaNothing, ViaSerde};
    ///
    /// assert!((&&ValueOf::<Option<String>>::new().probe()).codec().is_some());
    /// ```
    pub const fn new() -> Self {
        ValueOf(PhantomData)
    }
}

impl<R> Default for ValueOf<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> ValueOf<Result<T, E>> {
    /// `Result` caches `T`.
    ///
    /// ```
    /// use cache_core::remote::codec::{ValueOf, ViaNothing, ViaSerde};
    ///
    /// struct NotSerde;
    /// // The error type does not matter: only `Ok` values are stored.
    /// assert!((&&ValueOf::<Result<u8, NotSerde>>::new().probe()).codec().is_some());
    /// ```
    pub fn probe(&self) -> CodecProbe<T> {
        CodecProbe::new()
    }
}

impl<T> ValueOf<Option<T>> {
    /// `Option` caches `T`.
    ///
    /// ```
    /// use cache_core::remote::codec::{ValueOf, ViaNothing, ViaSerde};
    ///
    /// assert!((&&ValueOf::<Option<u8>>::new().probe()).codec().is_some());
    /// ```
    pub fn probe(&self) -> CodecProbe<T> {
        CodecProbe::new()
    }
}

/// The value type of every other return type is the type itself.
///
/// ```
/// use cache_core::remote::codec::{ValueOf, ValueOfPlain, ViaNothing, ViaSerde};
///
/// assert!((&&ValueOf::<String>::new().probe()).codec().is_some());
/// ```
pub trait ValueOfPlain<R> {
    /// The probe for `R`.
    fn probe(&self) -> CodecProbe<R>;
}

impl<R> ValueOfPlain<R> for ValueOf<R> {
    fn probe(&self) -> CodecProbe<R> {
        CodecProbe::new()
    }
}

/// Chosen for [`Storable`] types.
///
/// ```
/// use cache_core::remote::codec::{CodecProbe, ViaNothing, ViaSerde};
///
/// assert!((&&CodecProbe::<String>::new()).codec().is_some());
/// ```
pub trait ViaSerde<T> {
    /// The serde codec.
    fn codec(&self) -> Option<Codec<T>>;
}

impl<T: Storable> ViaSerde<T> for &CodecProbe<T> {
    fn codec(&self) -> Option<Codec<T>> {
        Some(Codec::serde())
    }
}

/// Chosen for every other type.
///
/// ```
/// use cache_core::remote::codec::{CodecProbe, ViaNothing, ViaSerde};
///
/// struct Opaque;
/// assert!((&&CodecProbe::<Opaque>::new()).codec().is_none());
/// ```
pub trait ViaNothing<T> {
    /// No codec: memory only.
    fn codec(&self) -> Option<Codec<T>>;
}

impl<T> ViaNothing<T> for CodecProbe<T> {
    fn codec(&self) -> Option<Codec<T>> {
        None
    }
}

/// axum's `Json<T>` is not serde-serializable itself; its codec is `T`'s, so a handler returning
/// `Json<T>` (or `Result<Json<T>, E>`) reaches the remote tier when `T` can. An inherent method:
/// it wins over [`ViaNothing`], and is passed over (its bound unmet) when `T` is not [`Storable`].
#[cfg(feature = "axum")]
impl<T: Storable> CodecProbe<axum::Json<T>> {
    /// The serde codec of `T`, wrapped in `Json`.
    ///
    /// ```
    /// use cache_core::remote::codec::CodecProbe;
    ///
    /// assert!(CodecProbe::<axum::Json<Vec<u32>>>::new().codec().is_some());
    /// ```
    pub fn codec(&self) -> Option<Codec<axum::Json<T>>> {
        Some(Codec {
            encode: |key, value, meta, compress_above| {
                envelope::encode(key, &value.0, meta, compress_above).map_err(|e| e.to_string())
            },
            decode: |key, bytes, now| {
                envelope::decode::<T>(key, bytes, now).map(|(v, meta)| (axum::Json(v), meta))
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_too_long_for_u64_milliseconds_is_not_already_expired() {
        let codec = Codec::<u32>::serde();
        let ttl = Duration::from_secs(1 << 62);
        let bytes = codec.encode("k", &7, Some(ttl), Duration::ZERO).unwrap();
        let (value, meta) = codec.decode("k", &bytes).unwrap();
        assert_eq!(value, 7);
        assert!(meta.expires_at_unix_ms.unwrap() > envelope::unix_ms_now() + (1 << 40));
    }
}
