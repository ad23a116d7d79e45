//! [`FaultProxy`]: a TCP proxy the tests own, between an application and Redis, that passes
//! bytes, slows them, resets connections, black-holes them or cuts the link, switched while the
//! test runs, and can strand the connections open at one moment for good. It reproduces network
//! faults that stopping or pausing Redis cannot: a slow link, a middlebox resetting connections,
//! a partition that leaves connections half-open, a middlebox that forgot a connection.
//!
//! It runs on its own two-thread tokio runtime, so blocking tests and async tests can both use it,
//! and stops (closing every connection) when dropped.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic, from the moment it is set, on new and open connections alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forwards bytes both ways unchanged.
    Pass,
    /// Forwards each chunk of bytes after this delay, each way: a slow link.
    Latency(Duration),
    /// Resets every open connection (RST, via `SO_LINGER` 0) and every new one right after
    /// accepting it: a middlebox or a crashed peer.
    Reset,
    /// Accepts connections and stops forwarding on all of them, sending nothing back: a network
    /// partition, where open connections stay half-open. Held bytes flow again once the mode
    /// changes back, as TCP retransmissions would deliver them after the partition heals.
    BlackHole,
    /// Closes every open connection (FIN) and closes new ones at once: the link is down.
    Cut,
}

/// Counters of a [`FaultProxy`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyCounts {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections reset by [`ProxyMode::Reset`].
    pub reset: u64,
    /// Connections closed by [`ProxyMode::Cut`].
    pub cut: u64,
    /// Bytes forwarded, both ways.
    pub bytes: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    reset: AtomicU64,
    cut: AtomicU64,
    bytes: AtomicU64,
}

/// A fault-injecting TCP proxy on a free loopback port, forwarding to `upstream`.
///
/// ```no_run
/// use tests::fault_proxy::{FaultProxy, ProxyMode};
/// let redis = tests::RedisServer::start();
/// let proxy = FaultProxy::start(redis.port());
/// let url = proxy.url(); // give this to the application instead of redis.url()
/// proxy.set(ProxyMode::Reset);
/// # drop(url);
/// ```
pub struct FaultProxy {
    port: u16,
    mode: watch::Sender<ProxyMode>,
    /// How many times [`strand`](Self::strand) was called; a connection accepted when it was
    /// lower is stranded.
    strands: watch::Sender<u64>,
    /// The port on `127.0.0.1` new connections are forwarded to.
    upstream: Arc<AtomicU16>,
    counters: Arc<Counters>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("port", &self.port)
            .field("mode", &*self.mode.borrow())
            .field("counts", &self.counts())
            .finish()
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream_port`, in
    /// [`ProxyMode::Pass`].
    pub fn start(upstream_port: u16) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("build the proxy's runtime");
        let listener = runtime
            .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .expect("bind the proxy's port");
        let port = listener.local_addr().expect("local addr").port();
        let (mode, _) = watch::channel(ProxyMode::Pass);
        let (strands, _) = watch::channel(0);
        let counters = Arc::new(Counters::default());
        let upstream = Arc::new(AtomicU16::new(upstream_port));
        runtime.spawn(accept_loop(
            listener,
            Arc::clone(&upstream),
            mode.clone(),
            strands.clone(),
            Arc::clone(&counters),
        ));
        FaultProxy {
            port,
            mode,
            strands,
            upstream,
            counters,
            runtime: Some(runtime),
        }
    }

    /// Strands every open connection: it forwards nothing more, ever, and sends nothing back
    /// (no FIN, no RST), while new connections are served as the mode says. What a middlebox
    /// that dropped a connection's state (a NAT or firewall timeout, a failover of the
    /// middlebox) does to it: TCP would only give up after many minutes of retransmissions.
    pub fn strand(&self) {
        self.strands.send_modify(|n| *n += 1);
    }

    /// Forwards new connections to `127.0.0.1:port` from now on; open ones stay with the server
    /// they reached. What a DNS name or a virtual IP moved to a promoted replica does.
    pub fn set_upstream(&self, port: u16) {
        self.upstream.store(port, Ordering::Relaxed);
    }

    /// Switches the mode; open connections follow at once.
    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// The mode in force.
    pub fn mode(&self) -> ProxyMode {
        *self.mode.borrow()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// What it did so far.
    pub fn counts(&self) -> ProxyCounts {
        ProxyCounts {
            accepted: self.counters.accepted.load(Ordering::Relaxed),
            reset: self.counters.reset.load(Ordering::Relaxed),
            cut: self.counters.cut.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Drops every task, and with them every socket.
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: Arc<AtomicU16>,
    mode: watch::Sender<ProxyMode>,
    strands: watch::Sender<u64>,
    counters: Arc<Counters>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = client.set_nodelay(true);
        let mut stranded = strands.subscribe();
        stranded.borrow_and_update();
        let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, upstream.load(Ordering::Relaxed)));
        tokio::spawn(connection(
            client,
            upstream,
            mode.subscribe(),
            stranded,
            Arc::clone(&counters),
        ));
    }
}

/// Resets a socket: with `SO_LINGER` 0, closing sends RST instead of FIN.
fn reset(stream: &TcpStream) {
    #[allow(deprecated)]
    // tokio deprecates set_linger because a positive linger blocks on drop; 0 never does.
    let _ = stream.set_linger(Some(Duration::ZERO));
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<ProxyMode>,
    stranded: watch::Receiver<u64>,
    counters: Arc<Counters>,
) {
    // A black hole accepts and then sits still, even before connecting upstream.
    let now = wait_while_black_hole(&mut mode).await;
    match now {
        ProxyMode::Reset => {
            reset(&client);
            counters.reset.fetch_add(1, Ordering::Relaxed);
            return;
        }
        ProxyMode::Cut => {
            counters.cut.fetch_add(1, Ordering::Relaxed);
            return;
        }
        _ => {}
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        // Upstream down: the client sees its connection closed, as through a real proxy.
        return;
    };
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(
        client_read,
        server_write,
        mode.clone(),
        stranded.clone(),
        Arc::clone(&counters),
    );
    let down = pump(
        server_read,
        client_write,
        mode,
        stranded,
        Arc::clone(&counters),
    );
    // When either direction ends, the whole connection ends (both tasks are dropped here).
    let ended = tokio::select! {
        e = up => e,
        e = down => e,
    };
    match ended {
        End::Reset => {
            counters.reset.fetch_add(1, Ordering::Relaxed);
        }
        End::Cut => {
            counters.cut.fetch_add(1, Ordering::Relaxed);
        }
        End::Closed => {}
    }
}

/// Waits out a black hole; returns the mode that ended it (or the current one).
async fn wait_while_black_hole(mode: &mut watch::Receiver<ProxyMode>) -> ProxyMode {
    loop {
        let now = *mode.borrow_and_update();
        if now != ProxyMode::BlackHole {
            return now;
        }
        if mode.changed().await.is_err() {
            return ProxyMode::Cut;
        }
    }
}

enum End {
    Closed,
    Reset,
    Cut,
}

/// Copies one direction under the mode in force. On `Reset` both sockets of the connection get
/// `SO_LINGER` 0 (they close with RST when the connection's halves drop); on `Cut` they close
/// normally. Once stranded it stops for good, holding both sockets open (see
/// [`FaultProxy::strand`]).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<ProxyMode>,
    mut stranded: watch::Receiver<u64>,
    counters: Arc<Counters>,
) -> End {
    let mut buf = vec![0u8; 16 * 1024];
    let fatal = |m: ProxyMode, from: &OwnedReadHalf, to: &OwnedWriteHalf| match m {
        ProxyMode::Reset => {
            reset(from.as_ref());
            reset(to.as_ref());
            Some(End::Reset)
        }
        ProxyMode::Cut => Some(End::Cut),
        _ => None,
    };
    loop {
        // Read unless black-holed; a mode change wakes us either way.
        let current = *mode.borrow_and_update();
        if let Some(end) = fatal(current, &from, &to) {
            return end;
        }
        if current == ProxyMode::BlackHole {
            let now = wait_while_black_hole(&mut mode).await;
            if let Some(end) = fatal(now, &from, &to) {
                return end;
            }
            continue;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return End::Closed,
                Ok(n) => n,
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return End::Cut;
                }
                continue;
            }
            _ = stranded.changed() => {
                // Dropping the halves would close them; they stay, silent.
                let _kept = (from, to);
                return std::future::pending().await;
            }
        };
        // The chunk is in hand: apply the mode to it.
        let mut now = *mode.borrow_and_update();
        if now == ProxyMode::BlackHole {
            now = wait_while_black_hole(&mut mode).await;
        }
        if let ProxyMode::Latency(d) = now {
            tokio::time::sleep(d).await;
            now = *mode.borrow_and_update();
        }
        if let Some(end) = fatal(now, &from, &to) {
            return end;
        }
        if stranded.has_changed().unwrap_or(false) {
            let _kept = (from, to);
            return std::future::pending().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return End::Closed;
        }
        counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}
