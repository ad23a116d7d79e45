//! The backplane: how instances sharing a remote tier keep each other's memory tier honest.
//!
//! Every invalidation (key, tag, pattern, named cache, all) and every overwrite made on one
//! instance is published; every other instance of the same namespace evicts the matching entries
//! from its memory tier (L1). Messages carry the sender's origin id so an instance ignores its own.
//! When the subscription drops and comes back, messages may have been lost in between, so the
//! instance clears the memory tier of every cache that has a remote tier: after a gap nothing it
//! holds can be trusted, and the remote tier still has the values, so the cost is one L2 read per
//! key. (Revalidating each entry would need a version per key in the remote tier and a round trip
//! per entry anyway.)
//!
//! Messages are applied by a thread of the instance's own, behind a bounded `Backlog`: the
//! subscription loop only queues them, so it keeps reading however slowly they are applied. When
//! the backlog is full the instance is in a gap too, and clears the same way instead of falling
//! further behind.

use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};

use super::{BoxFuture, RemoteError};

mod backlog;
pub(crate) use backlog::{Backlog, Next, Pushed};

/// The most messages from other instances waiting to be applied. A message names one key, tag,
/// pattern or cache, and is applied in microseconds unless it sweeps a large memory tier, so the
/// backlog fills only when applying is slow: 1,024 is about a second of a busy deployment's
/// invalidations (a thousand writes a second across its instances). At that rate an instance
/// further behind would serve entries invalidated more than a second ago; clearing instead costs
/// one Redis read per key read again.
pub(crate) const BACKLOG_MESSAGES: usize = 1024;

/// The most encoded bytes of the messages waiting to be applied (beyond the first): a message is
/// about a hundred bytes, so this bounds the backlog's memory only against unusually long keys,
/// tags or patterns.
pub(crate) const BACKLOG_BYTES: usize = 1 << 20;

/// A publish/subscribe channel between the instances of one namespace, provided by a backend
/// (Redis pub/sub in `cache-redis`).
///
/// ```
/// use cache_core::RemoteBackend;
/// use cache_core::remote::backplane::{Invalidation, Message};
/// use cache_core::testing::MemoryBackend;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let backplane = MemoryBackend::new().backplane().expect("MemoryBackend offers one");
/// let message = Message { origin: 1, invalidation: Invalidation::All }.encode();
/// backplane.publish(&message).await?; // no subscriber yet: nobody hears it
/// # Ok::<(), cache_core::RemoteError>(())
/// # }).unwrap();
/// ```
pub trait Backplane: Send + Sync + 'static {
    /// Sends `message` to every subscribed instance (including, possibly, this one).
    fn publish<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<(), RemoteError>>;

    /// The subscription loop: delivers messages to `sink` until `sink` is gone, reconnecting by
    /// itself after a failure and calling [`BackplaneSink::on_resubscribed`] once it is back.
    /// cache-core spawns this future on its own I/O runtime.
    fn subscribe(&self, sink: Weak<dyn BackplaneSink>) -> BoxFuture<'static, ()>;
}

/// Receives backplane traffic; implemented by cache-core's manager.
///
/// ```
/// use cache_core::remote::backplane::{BackplaneSink, Message};
/// use std::sync::Mutex;
///
/// /// Collects what it hears, decoded.
/// #[derive(Default)]
/// struct Recorder(Mutex<Vec<Message>>);
///
/// impl BackplaneSink for Recorder {
///     fn on_message(&self, message: &[u8]) {
///         self.0.lock().unwrap().extend(Message::decode(message));
///     }
///     fn on_resubscribed(&self) {}
/// }
/// # let r = Recorder::default();
/// # r.on_message(b"not a message");
/// # assert!(r.0.lock().unwrap().is_empty());
/// ```
pub trait BackplaneSink: Send + Sync + 'static {
    /// A message from some instance. cache-core's sink only queues it for the thread that
    /// applies messages, so this never waits for an eviction: a backend calls it from its
    /// subscription loop as it reads.
    fn on_message(&self, message: &[u8]);
    /// The subscription was (re-)established after a gap: messages may have been lost.
    fn on_resubscribed(&self);
}

/// Counters of one instance's backplane subscription ([`CacheManager::backplane_stats`]), so an
/// operator (or a test) can see that the backplane is live and that messages are applied.
///
/// [`CacheManager::backplane_stats`]: crate::CacheManager::backplane_stats
///
/// ```
/// use cache_core::testing::MemoryBackend;
/// use cache_core::{CacheManager, Policy, Tier};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let manager = CacheManager::builder()
///     .remote(MemoryBackend::new())
///     .cache("users", Policy::new().tier(Tier::Hybrid))
///     .build();
/// assert!(manager.backplane_subscribed(Duration::from_secs(5)).await);
/// let stats = manager.backplane_stats().expect("a hybrid cache has a backplane");
/// assert_eq!((stats.subscriptions, stats.applied), (1, 0));
/// # });
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BackplaneStats {
    /// Subscriptions established: the first one and each one after a gap. Each cleared the
    /// memory tier of every cache that has a remote tier.
    pub subscriptions: u64,
    /// Messages from other instances, applied to this instance's memory tiers.
    pub applied: u64,
    /// Messages from other instances not applied one by one because this instance fell behind:
    /// refused by its full backlog of messages waiting to be applied, or discarded from it. Each
    /// such gap cleared the memory tier of every cache that has a remote tier, which covers them;
    /// counted once cleared. (See `docs/hybrid.md`, guarantee 3.)
    #[serde(default)]
    pub overflowed: u64,
    /// This instance's own messages, ignored.
    pub own: u64,
    /// Payloads on the channel that are not backplane messages, ignored.
    pub foreign: u64,
}

/// What one backplane message asks the other instances to evict from memory.
///
/// ```
/// use cache_core::remote::backplane::Invalidation;
///
/// let one_key = Invalidation::Key { cache: "users".into(), key: "user:1".into() };
/// assert_ne!(one_key, Invalidation::All);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Invalidation {
    /// One key of a named cache (invalidated or overwritten).
    Key {
        /// The named cache.
        cache: String,
        /// The logical key.
        key: String,
    },
    /// Every entry carrying a tag, in every cache.
    Tag {
        /// The tag.
        tag: String,
    },
    /// The keys of a named cache matching a glob.
    Pattern {
        /// The named cache.
        cache: String,
        /// The glob.
        pattern: String,
    },
    /// All of a named cache.
    Cache {
        /// The named cache.
        cache: String,
    },
    /// Everything.
    All,
}

/// The wire form of a backplane message (MessagePack with named fields).
///
/// ```
/// use cache_core::remote::backplane::{Invalidation, Message};
///
/// let m = Message { origin: 42, invalidation: Invalidation::Tag { tag: "user:7".into() } };
/// assert_eq!(Message::decode(&m.encode()), Some(m));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sending instance.
    pub origin: u128,
    /// What to evict.
    pub invalidation: Invalidation,
}

impl Message {
    /// Encodes the message.
    ///
    /// ```
    /// use cache_core::remote::backplane::{Invalidation, Message};
    ///
    /// let bytes = Message { origin: 1, invalidation: Invalidation::All }.encode();
    /// assert!(!bytes.is_empty());
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// Decodes a message; `None` for anything that is not one (another app on the channel).
    ///
    /// ```
    /// use cache_core::remote::backplane::{Invalidation, Message};
    ///
    /// let m = Message { origin: 1, invalidation: Invalidation::All };
    /// assert_eq!(Message::decode(&m.encode()), Some(m));
    /// assert_eq!(Message::decode(b"hello from another app"), None);
    /// ```
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        rmp_serde::from_slice(bytes).ok()
    }
}

/// Keeps the subscription task alive only as long as its manager.
pub(crate) fn start(backplane: &Arc<dyn Backplane>, sink: Weak<dyn BackplaneSink>) {
    let task = backplane.subscribe(sink);
    super::blocking::spawn(task);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_foreign_bytes_are_ignored() {
        let m = Message {
            origin: 42,
            invalidation: Invalidation::Key {
                cache: "users".into(),
                key: "user:1".into(),
            },
        };
        assert_eq!(Message::decode(&m.encode()), Some(m));
        assert_eq!(Message::decode(b"hello"), None);
    }
}
