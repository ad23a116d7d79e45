//! [`RedisBackplane`]: cache-core's backplane on Redis pub/sub.
//!
//! One channel per namespace and database, `{namespace}:backplane` (`{namespace}:backplane:db{N}`
//! on a database other than 0; the namespace written as in keys, so two namespaces never share a
//! channel). Messages are published with `PUBLISH` on the backend's
//! ordinary connection(s); the subscription has a dedicated connection of its own, since a
//! subscribed connection can issue nothing else.
//!
//! The subscription loop connects, subscribes, tells the core it is (re)subscribed — the core
//! then clears the memory tier of its remote-backed caches, because messages published while no
//! subscription existed are lost for good (Redis pub/sub keeps nothing) — and delivers messages
//! until the connection ends. An idle connection is checked with `PING` every
//! [`KEEPALIVE`], so a server that stopped answering (paused, partitioned) is noticed without
//! waiting for TCP. After a failure it waits (50 ms, doubling to 2 s) and starts over. It ends
//! when the manager it serves is gone. It never panics, and it never logs a password.
//!
//! On Redis Cluster a classic `PUBLISH` reaches the subscribers of every node, so the
//! subscription lives on any one node: the seeds are tried in turn, moving to the next when one
//! fails.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use cache_core::RemoteError;
use cache_core::remote::BoxFuture;
use cache_core::remote::backplane::{Backplane, BackplaneSink};
use futures_util::StreamExt;
use redis::ConnectionAddr;
use redis::aio::{PubSubSink, PubSubStream};

use crate::backend::Shared;
use crate::keys::segment;
use crate::redact::{Secrets, redact};

/// The first wait after a failed connection or a lost subscription.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between two attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long an idle subscription goes before it is checked with `PING`.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(1);

/// The Redis channel of a namespace's backplane on logical database `db`.
///
/// Redis pub/sub ignores the database number (a message published while `SELECT`ed to 1
/// reaches subscribers on every database), so two deployments sharing a server on different
/// databases would otherwise empty each other's memory tiers. Database 0 keeps the plain name.
pub(crate) fn channel(namespace: &str, db: i64) -> String {
    match db {
        0 => format!("{}:backplane", segment(namespace)),
        db => format!("{}:backplane:db{db}", segment(namespace)),
    }
}

/// cache-core's [`Backplane`] on Redis pub/sub; what
/// [`RedisBackend::backplane`](cache_core::RemoteBackend::backplane) returns.
///
/// ```
/// use cache_core::RemoteBackend;
/// use cache_redis::{RedisBackend, RedisConfig};
///
/// // Made without connecting; hybrid caches of a manager with this backend use it.
/// let backend = RedisBackend::new(RedisConfig::standalone("redis://127.0.0.1:1"));
/// assert!(backend.backplane().is_some());
/// ```
pub struct RedisBackplane {
    shared: Arc<Shared>,
    subscriber: Arc<SubscriberConfig>,
}

/// What the subscription loop needs, owned by its task.
struct SubscriberConfig {
    channel: String,
    /// A client per URL (one for a standalone server, one per seed of a cluster), or why the URL
    /// is unusable.
    nodes: Vec<Node>,
    /// Subscribe on the master owning the channel's slot, if it can be found.
    cluster: bool,
    connect_timeout: Duration,
    response_timeout: Duration,
    secrets: Secrets,
}

struct Node {
    /// The URL with its password redacted, for logs.
    shown: String,
    client: Result<redis::Client, String>,
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("channel", &self.subscriber.channel)
            .field(
                "nodes",
                &self
                    .subscriber
                    .nodes
                    .iter()
                    .map(|n| n.shown.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RedisBackplane {
    /// A backplane publishing through the backend's connection and subscribing to one of its
    /// URLs.
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let config = &shared.config;
        let urls = config.urls();
        let secrets = Secrets::of(urls.iter().copied());
        let nodes = urls
            .iter()
            .map(|url| Node {
                shown: redact(url),
                client: redis::Client::open(*url)
                    .map_err(|e| secrets.scrub(&format!("invalid Redis URL: {e}"))),
            })
            .collect();
        let subscriber = Arc::new(SubscriberConfig {
            channel: channel(&config.namespace, config.database()),
            nodes,
            cluster: config.is_cluster(),
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            secrets,
        });
        RedisBackplane { shared, subscriber }
    }
}

impl Backplane for RedisBackplane {
    fn publish<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            let _receivers: i64 = self
                .shared
                .conn
                .query(
                    redis::cmd("PUBLISH")
                        .arg(&self.subscriber.channel)
                        .arg(message),
                )
                .await?;
            Ok(())
        })
    }

    fn subscribe(&self, sink: Weak<dyn BackplaneSink>) -> BoxFuture<'static, ()> {
        let config = Arc::clone(&self.subscriber);
        Box::pin(async move { config.run(sink).await })
    }
}

/// Why one subscription ended.
enum Ended {
    /// The manager is gone: stop for good.
    SinkGone,
    /// The connection failed or closed: try again.
    Lost(String),
}

impl SubscriberConfig {
    /// The subscription loop (see the module docs).
    async fn run(&self, sink: Weak<dyn BackplaneSink>) {
        if self.nodes.is_empty() {
            tracing::warn!(channel = %self.channel, "cache backplane has no Redis URL to subscribe to; memory tiers will not hear of other instances' invalidations");
            return;
        }
        let mut backoff = MIN_BACKOFF;
        // The node to try next; it moves on after each failure, so a dead seed is not retried
        // forever while another would answer.
        let mut next = 0;
        // Failed attempts since the last subscription: only the first of a streak is a warning.
        let mut failures = 0u32;
        loop {
            if sink.strong_count() == 0 {
                return;
            }
            let node = &self.nodes[next % self.nodes.len()];
            match self.subscribe_once(node, &sink, failures).await {
                Ok(Ended::SinkGone) => return,
                Ok(Ended::Lost(why)) => {
                    // It was subscribed: start the next round of waits from the shortest.
                    backoff = MIN_BACKOFF;
                    failures = 0;
                    tracing::warn!(node = %node.shown, channel = %self.channel, error = %why, "cache backplane subscription lost; resubscribing");
                }
                Err(why) => {
                    if failures == 0 {
                        tracing::warn!(node = %node.shown, channel = %self.channel, error = %why, "cache backplane cannot subscribe; retrying with backoff");
                    } else {
                        tracing::debug!(node = %node.shown, channel = %self.channel, error = %why, retry_in = ?backoff, "cache backplane cannot subscribe");
                    }
                    failures = failures.saturating_add(1);
                    next = (next + 1) % self.nodes.len();
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Connects to `node` (on a cluster, preferably to the owner of the channel's slot),
    /// subscribes, and delivers messages until the connection ends. `Err` if it never got
    /// subscribed.
    async fn subscribe_once(
        &self,
        node: &Node,
        sink: &Weak<dyn BackplaneSink>,
        failures: u32,
    ) -> Result<Ended, String> {
        let seed = node.client.as_ref().map_err(Clone::clone)?;
        let owner = match self.cluster {
            true => match self.channel_owner(seed).await {
                Ok(owner) => owner,
                Err(e) => {
                    tracing::debug!(node = %node.shown, error = %e, "cache backplane: no slot owner for the channel; subscribing on the seed");
                    None
                }
            },
            false => None,
        };
        let (mut commands, mut messages, at) = match owner {
            Some((client, at)) => match self.connect(&client).await {
                Ok((c, m)) => (c, m, at),
                Err(e) => {
                    tracing::debug!(node = %at, error = %e, "cache backplane: cannot subscribe on the channel's slot owner; subscribing on the seed");
                    let (c, m) = self.connect(seed).await?;
                    (c, m, node.shown.clone())
                }
            },
            None => {
                let (c, m) = self.connect(seed).await?;
                (c, m, node.shown.clone())
            }
        };
        // Subscribed: whatever was published before now, this instance may have missed.
        match sink.upgrade() {
            Some(s) => s.on_resubscribed(),
            None => return Ok(Ended::SinkGone),
        }
        if failures > 0 {
            tracing::info!(node = %at, channel = %self.channel, "cache backplane subscribed again");
        } else {
            tracing::debug!(node = %at, channel = %self.channel, "cache backplane subscribed");
        }
        loop {
            match tokio::time::timeout(KEEPALIVE, messages.next()).await {
                Ok(Some(msg)) => match sink.upgrade() {
                    Some(s) => s.on_message(msg.get_payload_bytes()),
                    None => return Ok(Ended::SinkGone),
                },
                Ok(None) => return Ok(Ended::Lost("connection closed".to_owned())),
                Err(_idle) => {
                    if sink.strong_count() == 0 {
                        return Ok(Ended::SinkGone);
                    }
                    match tokio::time::timeout(
                        self.response_timeout,
                        commands.ping::<redis::Value>(),
                    )
                    .await
                    {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            return Ok(Ended::Lost(self.secrets.scrub(&e.to_string())));
                        }
                        Err(_) => {
                            return Ok(Ended::Lost(format!(
                                "no answer to PING within {:?}",
                                self.response_timeout
                            )));
                        }
                    }
                }
            }
        }
    }

    /// A dedicated pub/sub connection to `client`, subscribed to the channel.
    async fn connect(&self, client: &redis::Client) -> Result<(PubSubSink, PubSubStream), String> {
        let pubsub = tokio::time::timeout(self.connect_timeout, client.get_async_pubsub())
            .await
            .map_err(|_| format!("connecting took longer than {:?}", self.connect_timeout))?
            .map_err(|e| self.secrets.scrub(&e.to_string()))?;
        let (mut commands, messages) = pubsub.split();
        tokio::time::timeout(self.response_timeout, commands.subscribe(&self.channel))
            .await
            .map_err(|_| format!("SUBSCRIBE took longer than {:?}", self.response_timeout))?
            .map_err(|e| self.secrets.scrub(&e.to_string()))?;
        Ok((commands, messages))
    }

    /// On a cluster, a client for the master owning the channel's slot (and its address, for
    /// logs), reached with the seed's credentials and TLS settings; `None` when that is the seed.
    ///
    /// `PUBLISH` is routed like a key, to that master, which then forwards the message to every
    /// other node over the cluster bus. Subscribing on the owner spares the message that hop:
    /// Redis 7.0 writes the cluster bus without `TCP_NODELAY`, and the hop measured up to 40 ms
    /// here, against about 1 ms without it. Subscribing elsewhere still works, only slower, so
    /// after a resharding the subscription is right until it next reconnects.
    async fn channel_owner(
        &self,
        seed: &redis::Client,
    ) -> Result<Option<(redis::Client, String)>, String> {
        let scrub = |e: redis::RedisError| self.secrets.scrub(&e.to_string());
        let mut conn = tokio::time::timeout(
            self.connect_timeout,
            seed.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| format!("connecting took longer than {:?}", self.connect_timeout))?
        .map_err(scrub)?;
        let (slot, slots): (i64, redis::Value) = tokio::time::timeout(
            self.response_timeout,
            redis::pipe()
                .cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&self.channel)
                .cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut conn),
        )
        .await
        .map_err(|_| format!("CLUSTER SLOTS took longer than {:?}", self.response_timeout))?
        .map_err(scrub)?;
        let (host, port) = slot_owner(slot, slots).ok_or("no master owns the channel's slot")?;
        let info = seed.get_connection_info().clone();
        let addr = match info.addr() {
            ConnectionAddr::Tcp(h, p) if *h == host && *p == port => return Ok(None),
            ConnectionAddr::Tcp(..) => ConnectionAddr::Tcp(host.clone(), port),
            ConnectionAddr::TcpTls {
                host: h, port: p, ..
            } if *h == host && *p == port => return Ok(None),
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.clone(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => return Ok(None),
        };
        let client = redis::Client::open(info.set_addr(addr)).map_err(scrub)?;
        Ok(Some((client, format!("{host}:{port}"))))
    }
}

/// The master serving `slot` in a `CLUSTER SLOTS` reply:
/// `[[start, end, [host, port, id, ..], replicas..], ..]`.
fn slot_owner(slot: i64, reply: redis::Value) -> Option<(String, u16)> {
    use redis::Value;
    let Value::Array(ranges) = reply else {
        return None;
    };
    ranges.into_iter().find_map(|range| {
        let Value::Array(fields) = range else {
            return None;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        if !(*start..=*end).contains(&slot) {
            return None;
        }
        let host = match master.first()? {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let port = match master.get(1)? {
            Value::Int(p) => u16::try_from(*p).ok()?,
            _ => return None,
        };
        Some((host, port))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_owner_parsing() {
        use redis::Value;
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let range = |a: i64, b: i64, host: &str, port: i64| {
            Value::Array(vec![
                Value::Int(a),
                Value::Int(b),
                Value::Array(vec![bulk(host), Value::Int(port), bulk("id")]),
            ])
        };
        let reply = Value::Array(vec![
            range(0, 5460, "10.0.0.1", 7000),
            range(5461, 10922, "10.0.0.2", 7001),
            Value::Int(3),
        ]);
        assert_eq!(
            slot_owner(5461, reply.clone()),
            Some(("10.0.0.2".to_owned(), 7001))
        );
        assert_eq!(
            slot_owner(0, reply.clone()),
            Some(("10.0.0.1".to_owned(), 7000))
        );
        assert_eq!(slot_owner(16000, reply), None);
        assert_eq!(slot_owner(1, Value::Nil), None);
    }

    /// Counts what the subscription reports.
    #[derive(Default)]
    struct CountingSink {
        subscribed: std::sync::atomic::AtomicU32,
    }

    impl BackplaneSink for CountingSink {
        fn on_message(&self, _message: &[u8]) {}
        fn on_resubscribed(&self) {
            self.subscribed
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn without_redis_the_loop_retries_quietly_and_ends_with_its_manager() {
        use cache_core::RemoteBackend;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for url in ["redis://:hunter2@127.0.0.1:1", "nonsense://:hunter2@"] {
            let backend = crate::RedisBackend::new(crate::RedisConfig::standalone(url));
            let backplane = backend.backplane().expect("Redis offers a backplane");
            let sink = Arc::new(CountingSink::default());
            let dyn_sink: Arc<dyn BackplaneSink> = sink.clone();
            let task = rt.spawn(backplane.subscribe(Arc::downgrade(&dyn_sink)));
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
            assert!(!task.is_finished(), "{url}: it keeps retrying");
            assert_eq!(sink.subscribed.load(std::sync::atomic::Ordering::SeqCst), 0);
            drop((dyn_sink, sink));
            let ended = rt.block_on(async { tokio::time::timeout(MAX_BACKOFF * 2, task).await });
            assert!(
                matches!(ended, Ok(Ok(()))),
                "{url}: the loop ends (without panicking) once its sink is gone"
            );
        }
    }

    #[test]
    fn one_channel_per_namespace_written_like_keys() {
        assert_eq!(channel("shop", 0), "shop:backplane");
        assert_eq!(channel("a:b", 0), "a%3Ab:backplane");
        // Pub/sub is server-wide: each database gets its own channel.
        assert_eq!(channel("shop", 3), "shop:backplane:db3");
        assert_ne!(channel("shop:backplane:db3", 0), channel("shop", 3));
    }
}
