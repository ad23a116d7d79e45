//! [`RedisBackplane`]: cache-core's backplane on Redis pub/sub.
//!
//! One channel per namespace, `{namespace}:backplane` (the namespace written as in keys, so two
//! namespaces never share a channel). Messages are published with `PUBLISH` on the backend's
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

use crate::backend::Shared;
use crate::keys::segment;
use crate::redact::{Secrets, redact};

/// The first wait after a failed connection or a lost subscription.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between two attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long an idle subscription goes before it is checked with `PING`.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(1);

/// The Redis channel of a namespace's backplane.
pub(crate) fn channel(namespace: &str) -> String {
    format!("{}:backplane", segment(namespace))
}

/// cache-core's [`Backplane`] on Redis pub/sub; what
/// [`RedisBackend::backplane`](cache_core::RemoteBackend::backplane) returns.
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
            channel: channel(&config.namespace),
            nodes,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            secrets,
        });
        RedisBackplane { shared, subscriber }
    }

    /// The channel messages go through.
    pub fn channel(&self) -> &str {
        &self.subscriber.channel
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

    /// Connects to `node`, subscribes, and delivers messages until the connection ends.
    /// `Err` if it never got subscribed.
    async fn subscribe_once(
        &self,
        node: &Node,
        sink: &Weak<dyn BackplaneSink>,
        failures: u32,
    ) -> Result<Ended, String> {
        let client = node.client.as_ref().map_err(Clone::clone)?;
        let pubsub = tokio::time::timeout(self.connect_timeout, client.get_async_pubsub())
            .await
            .map_err(|_| format!("connecting took longer than {:?}", self.connect_timeout))?
            .map_err(|e| self.secrets.scrub(&e.to_string()))?;
        let (mut commands, mut messages) = pubsub.split();
        tokio::time::timeout(self.response_timeout, commands.subscribe(&self.channel))
            .await
            .map_err(|_| format!("SUBSCRIBE took longer than {:?}", self.response_timeout))?
            .map_err(|e| self.secrets.scrub(&e.to_string()))?;
        // Subscribed: whatever was published before now, this instance may have missed.
        match sink.upgrade() {
            Some(s) => s.on_resubscribed(),
            None => return Ok(Ended::SinkGone),
        }
        if failures > 0 {
            tracing::info!(node = %node.shown, channel = %self.channel, "cache backplane subscribed again");
        } else {
            tracing::debug!(node = %node.shown, channel = %self.channel, "cache backplane subscribed");
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_channel_per_namespace_written_like_keys() {
        assert_eq!(channel("shop"), "shop:backplane");
        assert_eq!(channel("a:b"), "a%3Ab:backplane");
    }
}
