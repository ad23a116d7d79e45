//! The connection: lazy, self-healing, standalone or cluster, and the few command shapes the
//! tier needs (one command, a batch, unlinking keys, scanning every master).
//!
//! Nothing connects before the first operation, and no operation panics. Each connection (one
//! per pool slot of a standalone backend, one per cluster backend, on each runtime) is made in a
//! spawned task, so a caller's timeout never cancels an attempt halfway; a failed attempt is
//! forgotten, as is a connection whose link broke, so the next operation connects afresh.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_core::RemoteError;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared, try_join_all};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::io::tcp::TcpSettings;
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, FromRedisValue, IntoConnectionInfo, RedisError,
    ServerErrorKind, Value,
};
use tokio::runtime::Id as RuntimeId;

use crate::config::{Mode, RedisConfig};
use crate::redact::Secrets;

/// Keys per `SCAN` step, per pop from a tag record, and per `UNLINK` on a standalone server.
pub(crate) const BATCH: usize = 500;

/// A connection attempt, shared by the operations waiting for it.
type Connecting<C> = Shared<BoxFuture<'static, Result<(C, Arc<Live>), RemoteError>>>;

/// What is known of one connection besides itself.
struct Live {
    /// Tells this connection from one that replaced it in its slot.
    id: u64,
    /// A check of the connection is under way (see [`check`]).
    checking: AtomicBool,
    /// When the attempt that made it started.
    born: Instant,
}

/// How old a connection must be for a `READONLY` refusal to replace it (see [`Conn::fail`]).
const REPLICA_RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// One connection slot.
///
/// Kept by this crate rather than by redis-rs's `ConnectionManager`, which reconnects only
/// after an I/O error: an attempt the server refused (a password it did not accept yet, an
/// error reply to `AUTH` or `SELECT`, bytes that are not RESP) stayed its connection for good,
/// failing every later operation until the process restarted.
enum Lazy<C> {
    /// Not connected (never, or the last attempt or link failed): the next operation connects.
    Idle,
    Connecting(Connecting<C>),
    Ready(C, Arc<Live>),
}

/// How many runtimes' connections are kept; past this the least recently used are dropped.
const MAX_RUNTIMES: usize = 8;

/// State kept per tokio runtime.
///
/// redis-rs drives each connection with a task spawned on the runtime that created it, and the
/// connection dies with that runtime. An application has one runtime, but tests usually have one
/// per test (`#[tokio::test]`), and a backend held in a global would otherwise fail its first
/// operation on every new runtime. Keyed by runtime id, each runtime gets its own connections.
struct PerRuntime<T, Id = RuntimeId>(Mutex<Vec<(Id, T)>>);

impl<T, Id: PartialEq> PerRuntime<T, Id> {
    fn new() -> Self {
        PerRuntime(Mutex::new(Vec::new()))
    }

    /// Runs `f` on this runtime's entry, creating it with `init` first if needed. Entries are
    /// kept most recently used last, so the one dropped past [`MAX_RUNTIMES`] is the least
    /// recently used: the application's main runtime keeps its connections however many
    /// short-lived runtimes come and go (dropping the first one created, it reconnected after
    /// every eighth new runtime).
    fn with<R>(&self, id: Id, init: impl FnOnce() -> T, f: impl FnOnce(&mut T) -> R) -> R {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match all.iter().position(|(rid, _)| *rid == id) {
            // Usually the only runtime, and already last.
            Some(at) if at + 1 == all.len() => {}
            Some(at) => {
                let entry = all.remove(at);
                all.push(entry);
            }
            None => {
                if all.len() >= MAX_RUNTIMES {
                    all.remove(0);
                }
                all.push((id, init()));
            }
        }
        let last = all.len() - 1;
        f(&mut all[last].1)
    }
}

/// The connection slots of one backend, on each runtime that used it.
struct Slots<C> {
    per_runtime: PerRuntime<Vec<Lazy<C>>>,
    size: usize,
    /// The slot the next operation uses, in turn.
    next: AtomicUsize,
}

impl<C: Clone + Send + Sync + 'static> Slots<C> {
    fn new(size: usize) -> Self {
        Slots {
            per_runtime: PerRuntime::new(),
            size: size.max(1),
            next: AtomicUsize::new(0),
        }
    }

    fn on<R>(&self, runtime: RuntimeId, f: impl FnOnce(&mut Vec<Lazy<C>>) -> R) -> R {
        let size = self.size;
        self.per_runtime
            .with(runtime, || (0..size).map(|_| Lazy::Idle).collect(), f)
    }

    /// The next slot's connection, connecting with `connect` first if it has none.
    async fn get(
        &self,
        runtime: RuntimeId,
        connect: impl FnOnce() -> Connecting<C>,
    ) -> Result<(C, Ticket), RemoteError> {
        let slot = match self.size {
            1 => 0,
            n => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        let connecting = self.on(runtime, |all| match &all[slot] {
            Lazy::Ready(c, live) => Err((c.clone(), Arc::clone(live))),
            // An attempt that failed after every operation waiting for it had given up (the
            // core's timeout is shorter than the connect timeout) is still in the slot, and its
            // error, however old, is not this operation's answer: it connects again.
            Lazy::Connecting(f) if !matches!(f.clone().now_or_never(), Some(Err(_))) => {
                Ok(f.clone())
            }
            Lazy::Connecting(_) | Lazy::Idle => {
                let f = connect();
                all[slot] = Lazy::Connecting(f.clone());
                Ok(f)
            }
        });
        let (c, live) = match connecting {
            Err(ready) => ready,
            Ok(f) => {
                let result = f.clone().await;
                self.on(runtime, |all| {
                    if let Lazy::Connecting(current) = &all[slot]
                        && current.ptr_eq(&f)
                    {
                        // A failed attempt leaves the slot idle: the next operation tries again.
                        all[slot] = match &result {
                            Ok((c, live)) => Lazy::Ready(c.clone(), Arc::clone(live)),
                            Err(_) => Lazy::Idle,
                        };
                    }
                });
                result?
            }
        };
        Ok((c, Ticket { slot, live }))
    }
}

/// Giving up a connection, whatever its type.
trait Forget: Send + Sync {
    /// Forgets the connection `ticket` was given, unless it was already replaced: the next
    /// operation in its slot connects again.
    fn forget(&self, ticket: &Ticket);
}

impl<C: Clone + Send + Sync + 'static> Forget for Slots<C> {
    fn forget(&self, ticket: &Ticket) {
        if let Ok(runtime) = current_runtime() {
            self.on(runtime, |all| {
                if matches!(&all[ticket.slot], Lazy::Ready(_, live) if live.id == ticket.live.id) {
                    all[ticket.slot] = Lazy::Idle;
                }
            });
        }
    }
}

enum Kind {
    Standalone {
        client: redis::Client,
        settings: AsyncConnectionConfig,
        slots: Arc<Slots<MultiplexedConnection>>,
    },
    Cluster {
        client: ClusterClient,
        slots: Arc<Slots<ClusterConnection>>,
    },
    /// The configuration could not be turned into a client (a malformed URL, say). Every
    /// operation reports this; nothing panics.
    Invalid(String),
}

/// A live (or to-be) connection, standalone or cluster.
pub(crate) struct Conn {
    kind: Kind,
    secrets: Secrets,
    /// Numbers connections (see [`Live::id`]).
    connections: AtomicU64,
}

/// One usable handle for one operation.
#[derive(Clone)]
pub(crate) struct Handle {
    link: Link,
    ticket: Ticket,
    slots: Arc<dyn Forget>,
}

impl Handle {
    fn forget(&self) {
        self.slots.forget(&self.ticket);
    }
}

#[derive(Clone)]
enum Link {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Which connection a handle was given: its slot, and the connection's own state.
#[derive(Clone)]
struct Ticket {
    slot: usize,
    live: Arc<Live>,
}

fn current_runtime() -> Result<RuntimeId, RemoteError> {
    tokio::runtime::Handle::try_current()
        .map(|h| h.id())
        .map_err(|_| {
            RemoteError::Backend(
                "the Redis tier runs on tokio; no tokio runtime is running".to_owned(),
            )
        })
}

/// A redis error as the core sees it: a timeout, or a message without credentials.
fn remote_error(secrets: &Secrets, e: &RedisError) -> RemoteError {
    if e.is_timeout() {
        return RemoteError::Timeout;
    }
    RemoteError::Backend(secrets.scrub(&e.to_string()))
}

impl Conn {
    pub(crate) fn new(config: &RedisConfig) -> Self {
        let secrets = Secrets::of(config.urls());
        if config.urls().iter().any(|u| u.starts_with("rediss")) {
            // redis-rs builds its rustls config from the process default provider; install
            // ours unless the application already chose one.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let kind = match &config.mode {
            // TCP_NODELAY: redis-rs leaves Nagle's algorithm on, which stalls a pipelined request
            // behind the previous one's delayed ACK (about 40 ms) when a multiplexed connection
            // carries concurrent commands.
            Mode::Standalone(url) => match url
                .as_str()
                .into_connection_info()
                .map(|info| info.set_tcp_settings(nodelay()))
                .and_then(redis::Client::open)
            {
                Ok(client) => Kind::Standalone {
                    client,
                    slots: Arc::new(Slots::new(config.pool_size)),
                    // One attempt per operation: while Redis is down an operation fails at once
                    // (the core's breaker then skips the tier) instead of retrying inside the
                    // caller's time budget. The next operation tries again.
                    settings: AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(config.connect_timeout))
                        .set_response_timeout(Some(config.response_timeout)),
                },
                Err(e) => Kind::Invalid(secrets.scrub(&format!("invalid Redis URL: {e}"))),
            },
            Mode::Cluster(seeds) if seeds.is_empty() => {
                Kind::Invalid("a Redis Cluster needs at least one seed URL".to_owned())
            }
            Mode::Cluster(seeds) => {
                match ClusterClient::builder(seeds.iter().map(String::as_str))
                    .tcp_settings(nodelay())
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.response_timeout)
                    .retries(2)
                    .build()
                {
                    Ok(client) => Kind::Cluster {
                        client,
                        slots: Arc::new(Slots::new(1)),
                    },
                    Err(e) => Kind::Invalid(
                        secrets.scrub(&format!("invalid Redis Cluster configuration: {e}")),
                    ),
                }
            }
        };
        Conn {
            kind,
            secrets,
            connections: AtomicU64::new(0),
        }
    }

    /// A redis error as the core sees it: a timeout, or a message without credentials.
    pub(crate) fn error(&self, e: &RedisError) -> RemoteError {
        remote_error(&self.secrets, e)
    }

    /// A handle for one operation, connecting first if needed.
    pub(crate) async fn handle(&self) -> Result<Handle, RemoteError> {
        let runtime = current_runtime()?;
        match &self.kind {
            Kind::Invalid(msg) => Err(RemoteError::Backend(msg.clone())),
            Kind::Standalone {
                client,
                settings,
                slots,
            } => {
                let (c, ticket) = slots
                    .get(runtime, || {
                        let (client, settings) = (client.clone(), settings.clone());
                        self.connect(async move {
                            client
                                .get_multiplexed_async_connection_with_config(&settings)
                                .await
                        })
                    })
                    .await?;
                Ok(Handle {
                    link: Link::Standalone(c),
                    ticket,
                    slots: Arc::clone(slots) as Arc<dyn Forget>,
                })
            }
            Kind::Cluster { client, slots } => {
                let (c, ticket) = slots
                    .get(runtime, || {
                        let client = client.clone();
                        self.connect(async move { client.get_async_connection().await })
                    })
                    .await?;
                Ok(Handle {
                    link: Link::Cluster(c),
                    ticket,
                    slots: Arc::clone(slots) as Arc<dyn Forget>,
                })
            }
        }
    }

    /// Starts a connection attempt in a spawned task, so that it finishes (and is kept) even
    /// when the operation that started it times out first.
    fn connect<C: Clone + Send + Sync + 'static>(
        &self,
        attempt: impl Future<Output = Result<C, RedisError>> + Send + 'static,
    ) -> Connecting<C> {
        let live = Arc::new(Live {
            id: self.connections.fetch_add(1, Ordering::Relaxed),
            checking: AtomicBool::new(false),
            born: Instant::now(),
        });
        let secrets = self.secrets.clone();
        let task = tokio::spawn(async move {
            attempt
                .await
                .map(|c| (c, live))
                .map_err(|e| remote_error(&secrets, &e))
        });
        async move {
            task.await.unwrap_or_else(|e| {
                Err(RemoteError::Backend(format!(
                    "Redis connection task failed: {e}"
                )))
            })
        }
        .boxed()
        .shared()
    }

    /// Called with every failed command's error: a connection whose link is gone (or that is no
    /// longer usable: a reply it could not parse, say) is dropped so that the next operation
    /// connects again (from the seeds, on a cluster); one whose reply came too late is checked.
    ///
    /// So is a connection to a server that became a replica (`READONLY`): after a failover
    /// behind a stable address (a DNS name, a virtual IP), it would otherwise stay on the
    /// former master, every write refused, while a new connection reaches the promoted one. But
    /// only once it is [`REPLICA_RECONNECT_AFTER`] old: while the address still leads to the
    /// replica (a DNS name not moved yet, a URL naming a replica), replacing it on every refusal
    /// made one new connection per write, and the operations after each waited for it.
    fn fail(&self, handle: &Handle, e: RedisError) -> RemoteError {
        let demoted = e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
            && handle.ticket.live.born.elapsed() >= REPLICA_RECONNECT_AFTER;
        if e.is_unrecoverable_error() || demoted {
            handle.forget();
        } else if e.is_timeout() {
            check(handle);
        }
        self.error(&e)
    }

    /// Awaits `op`, a command on `handle`'s connection. If the caller stops waiting first, the
    /// connection is checked (see [`check`]).
    async fn on<T>(
        &self,
        handle: &Handle,
        op: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RemoteError> {
        let mut abandoned = Abandoned(Some(handle));
        let result = op.await;
        abandoned.0 = None;
        result.map_err(|e| self.fail(handle, e))
    }

    /// Runs one command.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RemoteError> {
        let handle = self.handle().await?;
        self.query_on(&handle, cmd).await
    }

    /// Runs one command on a connection already taken with [`handle`](Self::handle).
    pub(crate) async fn query_on<T: FromRedisValue>(
        &self,
        handle: &Handle,
        cmd: &Cmd,
    ) -> Result<T, RemoteError> {
        match handle.link.clone() {
            Link::Standalone(mut c) => self.on(handle, cmd.query_async(&mut c)).await,
            Link::Cluster(mut c) => self.on(handle, cmd.query_async(&mut c)).await,
        }
    }

    /// Runs independent commands: one pipeline (one round trip) on a standalone server;
    /// concurrently, each routed to its own slot's node, on a cluster (where a pipeline may
    /// not span slots).
    pub(crate) async fn batch(&self, cmds: Vec<Cmd>) -> Result<Vec<Value>, RemoteError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let handle = self.handle().await?;
        match handle.link.clone() {
            Link::Standalone(mut c) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                self.on(&handle, pipe.query_async::<Vec<Value>>(&mut c))
                    .await
            }
            Link::Cluster(c) => self.concurrently(&handle, &c, cmds).await,
        }
    }

    /// Runs the first command, then the others: one pipeline on a standalone server (which
    /// runs it in order); on a cluster, where [`batch`](Self::batch) would send them to their
    /// nodes all at once, the first alone, then the others concurrently once it has succeeded.
    /// For a value's `SET` and its tag scripts: a tag must not name the value before it exists,
    /// or a `delete_tag` popping the tag in between would remove nothing and the value, written
    /// just after, would escape the tag for good.
    pub(crate) async fn first_then_batch(
        &self,
        mut cmds: Vec<Cmd>,
    ) -> Result<Vec<Value>, RemoteError> {
        if cmds.len() < 2 || !matches!(self.kind, Kind::Cluster { .. }) {
            return self.batch(cmds).await;
        }
        let handle = self.handle().await?;
        match handle.link.clone() {
            Link::Cluster(mut c) => {
                let rest = cmds.split_off(1);
                let first = self
                    .on(&handle, cmds[0].query_async::<Value>(&mut c))
                    .await?;
                let mut replies = Vec::with_capacity(1 + rest.len());
                replies.push(first);
                replies.extend(self.concurrently(&handle, &c, rest).await?);
                Ok(replies)
            }
            // A cluster backend hands out cluster handles only.
            Link::Standalone(_) => self.batch(cmds).await,
        }
    }

    /// Runs commands concurrently on a cluster, each routed to its own slot's node.
    async fn concurrently(
        &self,
        handle: &Handle,
        c: &ClusterConnection,
        cmds: Vec<Cmd>,
    ) -> Result<Vec<Value>, RemoteError> {
        let all = try_join_all(cmds.into_iter().map(|cmd| {
            let mut c = c.clone();
            async move { cmd.query_async::<Value>(&mut c).await }
        }));
        self.on(handle, all).await
    }

    /// Unlinks `keys`, returning how many existed. On a cluster the keys are grouped by slot
    /// (one `UNLINK` per slot: a multi-key command may not span slots); on a standalone server
    /// they go in `UNLINK`s of up to [`BATCH`] keys, pipelined.
    pub(crate) async fn unlink(&self, keys: Vec<Vec<u8>>) -> Result<u64, RemoteError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let cmds: Vec<Cmd> = match &self.kind {
            Kind::Cluster { .. } => {
                let mut by_slot: HashMap<Slot, Vec<Vec<u8>>> = HashMap::new();
                for key in keys {
                    by_slot.entry(Slot::for_key(&key)).or_default().push(key);
                }
                by_slot.into_values().map(unlink_cmd).collect()
            }
            _ => keys
                .chunks(BATCH)
                .map(|chunk| unlink_cmd(chunk.to_vec()))
                .collect(),
        };
        let replies = self.batch(cmds).await?;
        Ok(replies
            .iter()
            .map(|v| match v {
                Value::Int(n) => (*n).max(0) as u64,
                _ => 0,
            })
            .sum())
    }

    /// Deletes every key matching `glob` with `SCAN MATCH` + `UNLINK`, on the one server or on
    /// every master of a cluster. Never `KEYS`. Returns how many keys were removed.
    pub(crate) async fn scan_unlink(&self, glob: &str) -> Result<u64, RemoteError> {
        let handle = self.handle().await?;
        match handle.link.clone() {
            Link::Standalone(mut c) => {
                let mut removed = 0;
                let mut cursor = 0u64;
                loop {
                    let (next, keys): (u64, Vec<Vec<u8>>) = scan_cmd(cursor, glob)
                        .query_async(&mut c)
                        .await
                        .map_err(|e| self.fail(&handle, e))?;
                    removed += self.unlink(keys).await?;
                    if next == 0 {
                        return Ok(removed);
                    }
                    cursor = next;
                }
            }
            Link::Cluster(c) => {
                let masters = self.masters(&handle, &c).await?;
                let per_master = masters.into_iter().map(|(host, port)| {
                    let mut c = c.clone();
                    let handle = &handle;
                    async move {
                        let mut removed = 0;
                        let mut cursor = 0u64;
                        loop {
                            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                host: host.clone(),
                                port,
                            });
                            let reply = c
                                .route_command(scan_cmd(cursor, glob), route)
                                .await
                                .map_err(|e| self.fail(handle, e))?;
                            let (next, keys): (u64, Vec<Vec<u8>>) = redis::from_redis_value(reply)
                                .map_err(|e| self.fail(handle, e.into()))?;
                            removed += self.unlink(keys).await?;
                            if next == 0 {
                                return Ok::<u64, RemoteError>(removed);
                            }
                            cursor = next;
                        }
                    }
                });
                Ok(try_join_all(per_master).await?.into_iter().sum())
            }
        }
    }

    /// The masters of the cluster, from `CLUSTER SLOTS` (supported by every Redis version that
    /// has a cluster, unlike `CLUSTER SHARDS`).
    async fn masters(
        &self,
        handle: &Handle,
        c: &ClusterConnection,
    ) -> Result<Vec<(String, u16)>, RemoteError> {
        let mut c = c.clone();
        let reply = c
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await
            .map_err(|e| self.fail(handle, e))?;
        let masters = parse_cluster_slots(reply);
        if masters.is_empty() {
            return Err(RemoteError::Backend(
                "CLUSTER SLOTS listed no masters".to_owned(),
            ));
        }
        Ok(masters)
    }
}

/// Checks `handle`'s connection when dropped armed: the caller stopped waiting for its reply.
struct Abandoned<'a>(Option<&'a Handle>);

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(handle) = self.0 {
            check(handle);
        }
    }
}

/// Checks a connection whose reply came too late, or was given up on: the core's timeout is
/// usually shorter than the response timeout, and a caller that stops waiting leaves redis-rs
/// nothing to time out, so a connection that went silent for good (a middlebox dropped its
/// state: no FIN, no RST) was kept until TCP gave up, many minutes later, every operation on it
/// timing out meanwhile. A `PING` on it (one check at a time per connection), answered only
/// after every earlier reply, must come back within the response timeout, or the connection is
/// forgotten and the next operation connects again. A server that is slow but answers keeps
/// its connection.
///
/// Standalone connections only. A cluster connection is one connection per master, and a
/// `PING` on it goes to every master: one master that stopped answering (paused, overloaded,
/// failing over) failed the check, and the connections to all the others were dropped with it,
/// their callers waiting for a reconnect from the seeds, again after every check.
fn check(handle: &Handle) {
    if matches!(handle.link, Link::Cluster(_)) {
        return;
    }
    let live = &handle.ticket.live;
    if live.checking.swap(true, Ordering::AcqRel) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        live.checking.store(false, Ordering::Release);
        return;
    };
    let handle = handle.clone();
    runtime.spawn(async move {
        let ping = redis::cmd("PING");
        let answered = match handle.link.clone() {
            Link::Standalone(mut c) => ping.query_async::<Value>(&mut c).await,
            Link::Cluster(mut c) => ping.query_async::<Value>(&mut c).await,
        };
        if let Err(e) = answered
            && (e.is_unrecoverable_error() || e.is_timeout())
        {
            handle.forget();
        }
        handle.ticket.live.checking.store(false, Ordering::Release);
    });
}

fn unlink_cmd(keys: Vec<Vec<u8>>) -> Cmd {
    let mut cmd = redis::cmd("UNLINK");
    for key in keys {
        cmd.arg(key);
    }
    cmd
}

fn scan_cmd(cursor: u64, glob: &str) -> Cmd {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(glob)
        .arg("COUNT")
        .arg(BATCH)
        .clone()
}

/// The distinct master addresses in a `CLUSTER SLOTS` reply:
/// `[[start, end, [host, port, id, ..], replicas..], ..]`.
fn parse_cluster_slots(reply: Value) -> Vec<(String, u16)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let Value::Array(ranges) = reply else {
        return out;
    };
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let Some(Value::Array(master)) = fields.get(2) else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let port = match master.get(1) {
            Some(Value::Int(p)) => u16::try_from(*p).ok(),
            _ => None,
        };
        if let Some(port) = port
            && seen.insert((host.clone(), port))
        {
            out.push((host, port));
        }
    }
    out
}

/// TCP settings of every connection: no Nagle delay (see `Conn::new`).
fn nodelay() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn the_runtime_dropped_past_the_limit_is_the_least_recently_used() {
        let per: PerRuntime<u32, u32> = PerRuntime::new();
        let created = std::cell::Cell::new(0);
        let use_runtime = |id: u32| {
            per.with(
                id,
                || {
                    created.set(created.get() + 1);
                    id
                },
                |v| *v,
            )
        };
        // The main runtime (0), used between every short-lived one.
        use_runtime(0);
        for short_lived in 1..=20 {
            use_runtime(short_lived);
            assert_eq!(use_runtime(0), 0);
        }
        // Created once, plus each short-lived one: 0 was never dropped and recreated.
        assert_eq!(created.get(), 21);
    }

    #[test]
    fn cluster_slots_parsing() {
        let node = |h: &str, p: i64| Value::Array(vec![bulk(h), Value::Int(p), bulk("id")]);
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("10.0.0.2", 7000),
                node("10.0.0.9", 7000),
            ]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(12000),
                node("10.0.0.1", 7000),
            ]),
            Value::Int(3),
        ]);
        assert_eq!(
            parse_cluster_slots(reply),
            vec![("10.0.0.1".to_owned(), 7000), ("10.0.0.2".to_owned(), 7000)]
        );
        assert!(parse_cluster_slots(Value::Nil).is_empty());
    }
}
