//! Shared by the `hybrid_*` tests: instances of the `cache_instance` binary (one application
//! process each: a hybrid memory + Redis cache and the Redis backplane), driven over stdin and
//! stdout, and the "database" directory they read.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The longest any one command may take before the test fails (a hung instance is a failure,
/// not a hang).
const REPLY_LIMIT: Duration = Duration::from_secs(15);

/// The bound on cross-instance invalidation.
pub const BOUND: Duration = Duration::from_millis(100);

/// A directory standing in for the application's database: item `id` is the file `item-{id}`.
#[derive(Debug)]
pub struct Db(PathBuf);

impl Db {
    pub fn new(label: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cache-rs-hybrid-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the db directory");
        Db(dir)
    }

    /// Updates item `id` (what the application's write path would do before invalidating).
    pub fn write(&self, id: u64, value: &str) {
        std::fs::write(self.0.join(format!("item-{id}")), value).expect("write the db");
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where an instance finds Redis.
#[derive(Clone, Debug)]
pub enum Target {
    Standalone(String),
    Cluster(Vec<String>),
}

/// Options of one instance.
#[derive(Clone, Debug)]
pub struct Options {
    pub target: Target,
    pub namespace: String,
    pub ttl: Duration,
    pub l1_ttl: Option<Duration>,
    /// More command-line arguments (`--body-delay-ms 200`, ...).
    pub extra: Vec<String>,
}

impl Options {
    pub fn new(target: Target, namespace: &str) -> Self {
        Options {
            target,
            namespace: namespace.to_owned(),
            ttl: Duration::from_secs(60),
            l1_ttl: None,
            extra: Vec::new(),
        }
    }

    /// Adds command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn l1_ttl(mut self, d: Duration) -> Self {
        self.l1_ttl = Some(d);
        self
    }

    pub fn ttl(mut self, d: Duration) -> Self {
        self.ttl = d;
        self
    }
}

/// One reply line, `key=value` words.
#[derive(Debug, Clone)]
pub struct Reply {
    pub line: String,
    fields: HashMap<String, String>,
}

impl Reply {
    fn parse(line: String) -> Self {
        let fields = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Reply { line, fields }
    }

    pub fn str(&self, field: &str) -> &str {
        self.fields
            .get(field)
            .unwrap_or_else(|| panic!("no `{field}` in reply {:?}", self.line))
    }

    pub fn num(&self, field: &str) -> u64 {
        self.str(field)
            .parse()
            .unwrap_or_else(|_| panic!("`{field}` is not a number in {:?}", self.line))
    }

    pub fn value(&self) -> &str {
        self.str("value")
    }

    pub fn ran(&self) -> bool {
        self.num("ran") > 0
    }
}

/// A running `cache_instance` process, killed on drop.
#[derive(Debug)]
pub struct Instance {
    pub name: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Instance {
    /// Starts an instance and waits until its backplane is subscribed.
    pub fn start(name: &'static str, db: &Db, options: &Options) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cache_instance"));
        match &options.target {
            Target::Standalone(url) => cmd.args(["--redis", url]),
            Target::Cluster(seeds) => cmd.args(["--cluster", &seeds.join(",")]),
        };
        cmd.args(["--namespace", &options.namespace, "--db", db.path()])
            .args(["--ttl-ms", &options.ttl.as_millis().to_string()]);
        if let Some(l1) = options.l1_ttl {
            cmd.args(["--l1-ttl-ms", &l1.as_millis().to_string()]);
        }
        cmd.args(&options.extra);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut instance = Instance {
            name,
            child,
            stdin,
            lines,
        };
        let first = instance.read_line();
        assert_eq!(first, "ready", "instance {name} did not start");
        instance
    }

    fn read_line(&mut self) -> String {
        match self.lines.recv_timeout(REPLY_LIMIT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "instance {} gave no reply within {REPLY_LIMIT:?}",
                    self.name
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait();
                panic!("instance {} exited: {status:?}", self.name)
            }
        }
    }

    /// Sends one command and returns its reply; an `error` reply fails the test.
    pub fn cmd(&mut self, command: &str) -> Reply {
        self.send(command);
        self.reply(command)
    }

    /// Sends one command without waiting for its reply (several instances can then work at
    /// once); [`reply`](Self::reply) reads it.
    pub fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("write to instance {}: {e}", self.name));
    }

    /// The reply to the command sent last (`command` only labels a failure).
    pub fn reply(&mut self, command: &str) -> Reply {
        let line = self.read_line();
        assert!(
            !line.starts_with("error"),
            "instance {} answered {command:?} with {line:?}",
            self.name
        );
        Reply::parse(line)
    }

    /// Kills the process with SIGKILL: no destructor, no cleanup, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Reads item `id` through the cached function; its entry is tagged `group:{id}`.
    pub fn get(&mut self, id: u64) -> Reply {
        self.cmd(&format!("get {id} {id}"))
    }

    pub fn stats(&mut self) -> Reply {
        self.cmd("stats")
    }

    pub fn backplane(&mut self) -> Reply {
        self.cmd("bp")
    }

    /// Waits (inside the instance) until its backplane counter `field` reaches `n`.
    pub fn wait(&mut self, field: &str, n: u64, limit: Duration) -> Reply {
        let reply = self.cmd(&format!("wait {field} {n} {}", limit.as_millis()));
        assert!(
            reply.line.starts_with("ok"),
            "instance {}: backplane counter {field} did not reach {n} within {limit:?}: {}",
            self.name,
            reply.line
        );
        reply
    }

    /// Waits until this instance has applied backplane message number `applied` (its `applied`
    /// counter reaches it), then reads item `id`, which must now be `want`; returns the time from
    /// `since` to that read's reply. Fails after `limit`.
    ///
    /// Deterministic on a loaded machine: the instance waits on its own counter (sleeping 100 µs
    /// between looks) instead of the test hammering it with reads, which on two cores would take
    /// CPU from the very thread that applies the message.
    pub fn applied_then_get(
        &mut self,
        applied: u64,
        id: u64,
        want: &str,
        since: Instant,
        limit: Duration,
    ) -> Duration {
        self.wait("applied", applied, limit);
        let r = self.get(id);
        let took = since.elapsed();
        assert_eq!(
            r.value(),
            want,
            "instance {} applied the message but still returns the old value of item {id}",
            self.name
        );
        took
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Caches item `id` on A (computed) and then on B (from Redis), and checks B now serves it from
/// memory. Returns B's `applied` count afterwards.
pub fn cache_on_both(a: &mut Instance, b: &mut Instance, id: u64, value: &str) -> u64 {
    let applied = b.backplane().num("applied");
    let r = a.get(id);
    assert_eq!((r.value(), r.ran()), (value, true), "A computes item {id}");
    // A's write to Redis is announced (it may be an overwrite); let B hear it before B reads,
    // so that the late message cannot evict what B is about to promote.
    b.wait("applied", applied + 1, Duration::from_secs(5));
    let before = b.stats();
    let r = b.get(id);
    assert_eq!(
        (r.value(), r.ran()),
        (value, false),
        "B gets item {id} from Redis"
    );
    let r = b.get(id);
    assert_eq!((r.value(), r.ran()), (value, false));
    let after = b.stats();
    assert_eq!(
        after.num("l2_hits"),
        before.num("l2_hits") + 1,
        "one L2 hit"
    );
    assert_eq!(
        after.num("l1_hits"),
        before.num("l1_hits") + 1,
        "then an L1 hit"
    );
    b.backplane().num("applied")
}
