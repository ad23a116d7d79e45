//! Real `redis-server` processes for tests: one server ([`RedisServer`]), a three-master cluster
//! ([`RedisCluster`]), and a listener that never answers ([`BlackHole`]).
//!
//! Every process listens on a free loopback port, keeps its files in its own temporary
//! directory, and is killed when its handle is dropped. A watchdog shell kills it too if the test
//! process exits without dropping the handle (a `static` shared by a test binary's tests), so no
//! test run leaves servers behind.
//!
//! A test that needs Redis and cannot start it fails loudly; nothing here skips.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "install redis-server and redis-tools (scripts/test does this)";
/// How long a server (or cluster) may take to come up before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The path of `name` on `PATH`, or a panic saying how to install it.
pub fn find_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found on PATH: {INSTALL_HINT}"))
}

/// A loopback port nothing listens on right now (and, with `with_bus`, whose cluster bus port,
/// `port + 10000`, is free too).
pub fn free_port(with_bus: bool) -> u16 {
    for _ in 0..200 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// A fresh directory under the system temp dir, removed by [`TempDir`]'s drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cache-rs-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends one inline command and returns the raw reply, or `None` if nothing usable answered
/// within `timeout`.
fn raw_command(port: u16, command: &str, timeout: Duration) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // Enough for the replies used here: a status line, an error line, or a bulk string.
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if reply_complete(&reply) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    (!reply.is_empty()).then(|| String::from_utf8_lossy(&reply).into_owned())
}

fn reply_complete(reply: &[u8]) -> bool {
    let Some(line_end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    match reply[0] {
        b'$' => {
            let len: i64 = std::str::from_utf8(&reply[1..line_end])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            len < 0 || reply.len() >= line_end + 2 + len as usize + 2
        }
        _ => true,
    }
}

/// PEM files for a TLS test server.
struct CertFiles {
    ca: String,
    cert: String,
    key: String,
}

/// Writes a CA and a server certificate for `127.0.0.1` (and `localhost`) into `dir`.
fn write_test_certs(dir: &Path) -> CertFiles {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let fail = |e: rcgen::Error| -> ! { panic!("generate test certificates: {e}") };
    let ca_key = KeyPair::generate().unwrap_or_else(|e| fail(e));
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail(e));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cache-rs test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap_or_else(|e| fail(e));
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap_or_else(|e| fail(e));
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap_or_else(|e| fail(e));
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &issuer).unwrap_or_else(|e| fail(e));
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path.to_string_lossy().into_owned()
    };
    CertFiles {
        ca: write("ca.crt", ca_cert.pem()),
        cert: write("server.crt", cert.pem()),
        key: write("server.key", key.serialize_pem()),
    }
}

/// One spawned `redis-server` with its watchdog.
#[derive(Debug)]
struct Process {
    child: Child,
    watchdog: Option<Child>,
}

impl Process {
    fn spawn(port: u16, dir: &Path, extra: &[String]) -> Self {
        Self::spawn_with(&["--port".to_owned(), port.to_string()], dir, extra)
    }

    fn spawn_with(listen: &[String], dir: &Path, extra: &[String]) -> Self {
        let server = find_program("redis-server");
        let mut cmd = Command::new(&server);
        cmd.args(listen)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e} ({INSTALL_HINT})"));
        // Kill the server if this test process goes away without dropping the handle.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; kill -9 {pid} 2>/dev/null",
                parent = std::process::id(),
                pid = child.id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        Process { child, watchdog }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        // SIGCONT first: a paused server must still die promptly.
        signal(self.child.id(), "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(pid: u32, sig: &str) {
    // The shell's built-in `kill`, as the watchdog uses: /bin/kill comes from procps, which a
    // minimal Debian image lacks.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{sig} {pid}"))
        .stderr(Stdio::null())
        .status();
    if let Err(e) = status {
        panic!("kill -{sig} {pid}: {e}");
    }
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Server arguments that disable `KEYS`, `FLUSHDB` and `FLUSHALL`: the tests run against servers
/// without them, so any use of those commands by the library fails loudly.
pub const NO_BULK_COMMANDS: &[&str] = &[
    "--rename-command",
    "KEYS",
    "",
    "--rename-command",
    "FLUSHDB",
    "",
    "--rename-command",
    "FLUSHALL",
    "",
];

/// One `redis-server` on a free loopback port, killed on drop.
///
/// ```no_run
/// let server = tests::RedisServer::start();
/// let url = server.url(); // redis://127.0.0.1:PORT
/// # drop(url);
/// ```
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    /// Set for a TLS-only server: the CA certificate that signed its certificate.
    tls_ca: Option<PathBuf>,
    extra: Vec<String>,
    process: Option<Process>,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra arguments (`["--requirepass", "secret"]`).
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_on_port(free_port(false), args)
    }

    /// Starts a server on a given port (one a test reserved earlier, say).
    pub fn start_on_port(port: u16, args: &[&str]) -> Self {
        let mut server = RedisServer {
            port,
            tls_ca: None,
            extra: args.iter().map(|s| s.to_string()).collect(),
            process: None,
            dir: TempDir::new(&format!("redis-{port}")),
        };
        server.launch();
        server
    }

    /// Starts a server that speaks only TLS, with a certificate for `127.0.0.1` signed by a
    /// fresh test CA (see [`tls_ca_file`](Self::tls_ca_file)); clients need no certificate.
    pub fn start_tls(args: &[&str]) -> Self {
        let port = free_port(false);
        let dir = TempDir::new(&format!("redis-tls-{port}"));
        let files = write_test_certs(&dir.0);
        let mut extra: Vec<String> = [
            "--tls-cert-file",
            &files.cert,
            "--tls-key-file",
            &files.key,
            "--tls-ca-cert-file",
            &files.ca,
            "--tls-auth-clients",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        extra.extend(args.iter().map(|s| s.to_string()));
        let mut server = RedisServer {
            port,
            tls_ca: Some(PathBuf::from(&files.ca)),
            extra,
            process: None,
            dir,
        };
        server.launch();
        server
    }

    /// Whether the server answering on our port is the process we started: its `process_id`
    /// when `INFO` is allowed (no password), else only that ours has not exited.
    fn answers_as_our_process(&mut self, info_allowed: bool) -> bool {
        let Some(process) = &mut self.process else {
            return false;
        };
        if !matches!(process.child.try_wait(), Ok(None)) {
            return false;
        }
        if !info_allowed {
            return true;
        }
        let ours = format!("process_id:{}\r\n", process.child.id());
        raw_command(self.port, "INFO server", Duration::from_millis(200))
            .is_some_and(|info| info.contains(&ours))
    }

    fn launch(&mut self) {
        let listen = if self.tls_ca.is_some() {
            vec![
                "--port".to_owned(),
                "0".to_owned(),
                "--tls-port".to_owned(),
                self.port.to_string(),
            ]
        } else {
            vec!["--port".to_owned(), self.port.to_string()]
        };
        let process = Process::spawn_with(&listen, &self.dir.0, &self.extra);
        self.process = Some(process);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.tls_ca.is_some() {
                // It listens once it is ready.
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return;
                }
            } else if let Some(reply) =
                raw_command(self.port, "PING", Duration::from_millis(200))
                // Any reply (`+PONG`, or `-NOAUTH` when a password is required) means a server is
                // up on the port; it must be ours, not another test's that took the port between
                // `free_port` releasing it and our server binding it (ours then exits below).
                && (reply.starts_with('+') || reply.starts_with('-'))
                && self.answers_as_our_process(reply.starts_with('+'))
            {
                return;
            }
            if let Some(p) = &mut self.process
                && let Ok(Some(status)) = p.child.try_wait()
            {
                panic!(
                    "redis-server on port {} exited at start ({status}); log:\n{}",
                    self.port,
                    log_tail(&self.dir.0)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "`redis-server --port {} --bind 127.0.0.1 --save '' --appendonly no {}` did not \
                     answer PING within {START_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.extra.join(" "),
                    log_tail(&self.dir.0)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://127.0.0.1:PORT`, for a server from [`start_tls`](Self::start_tls).
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// The PEM file of the CA that signed a TLS server's certificate.
    pub fn tls_ca_file(&self) -> Option<&Path> {
        self.tls_ca.as_deref()
    }

    /// The port it listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// Kills the server (its data is gone: nothing is persisted).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Stops the server if running and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Freezes the process (SIGSTOP): connections are accepted by the kernel but nothing
    /// answers.
    pub fn pause(&mut self) {
        let pid = self.pid().expect("pause: server not running");
        signal(pid, "STOP");
    }

    /// Resumes a paused server (SIGCONT).
    pub fn resume(&mut self) {
        let pid = self.pid().expect("resume: server not running");
        signal(pid, "CONT");
    }

    /// Runs `redis-cli` against this server and returns its trimmed output (panics on failure).
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

/// Runs `redis-cli -p PORT ARGS..` and returns its trimmed stdout.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new(find_program("redis-cli"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run redis-cli: {e} ({INSTALL_HINT})"));
    assert!(
        out.status.success(),
        "redis-cli -p {port} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A three-master Redis Cluster (no replicas) on free loopback ports, killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Process>,
    ports: Vec<u16>,
    _dirs: Vec<TempDir>,
}

impl RedisCluster {
    /// Starts three `cluster-enabled` servers, joins them with `redis-cli --cluster create`, and
    /// waits until every node reports `cluster_state:ok`.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// [`start`](Self::start), with extra arguments for every node.
    pub fn start_with_args(args: &[&str]) -> Self {
        const MASTERS: usize = 3;
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < MASTERS {
            let p = free_port(true);
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for &port in &ports {
            let dir = TempDir::new(&format!("redis-cluster-{port}"));
            let extra: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
            ]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect();
            nodes.push(Process::spawn(port, &dir.0, &extra));
            dirs.push(dir);
        }
        let cluster = RedisCluster {
            nodes,
            ports,
            _dirs: dirs,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        for (i, &port) in cluster.ports.iter().enumerate() {
            while raw_command(port, "PING", Duration::from_millis(200)).is_none() {
                assert!(
                    Instant::now() < deadline,
                    "cluster node on port {port} did not answer PING; log:\n{}",
                    log_tail(&cluster._dirs[i].0)
                );
                thread::sleep(Duration::from_millis(10));
            }
        }
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new(find_program("redis-cli"))
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("run redis-cli --cluster create: {e} ({INSTALL_HINT})"));
        assert!(
            out.status.success(),
            "`redis-cli --cluster create {} --cluster-replicas 0 --cluster-yes` failed:\n{}\n{}",
            addrs.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for &port in &cluster.ports {
            loop {
                let info = raw_command(port, "CLUSTER INFO", Duration::from_millis(500));
                let slots = raw_command(port, "CLUSTER SLOTS", Duration::from_millis(500));
                // Ok, and this node already knows all three masters (slot ranges).
                if info.is_some_and(|i| i.contains("cluster_state:ok"))
                    && slots.is_some_and(|s| s.starts_with(&format!("*{MASTERS}\r\n")))
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cluster node on port {port} did not reach cluster_state:ok within {START_TIMEOUT:?}"
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
        cluster
    }

    /// `redis://127.0.0.1:PORT` of every node.
    pub fn seed_urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The nodes' ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Runs `redis-cli -c` (cluster mode: follows redirects) against the first node.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        cli(self.ports[0], &all)
    }

    /// The keys held by one node (its own slots), by `redis-cli --scan`.
    pub fn node_keys(&self, port: u16, pattern: &str) -> Vec<String> {
        let out = cli(port, &["--scan", "--pattern", pattern]);
        out.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}

/// A TCP listener that accepts connections and never answers: for timeout tests.
#[derive(Debug)]
pub struct BlackHole {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BlackHole {
    /// Listens on a free loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind black hole");
        let port = listener.local_addr().expect("local addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        BlackHole {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
