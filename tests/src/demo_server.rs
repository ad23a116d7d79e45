//! The demo server (`examples/server`) as a child process, and the HTTP/1.1 clients the
//! end-to-end, fault and soak tests speak to it with.
//!
//! The binary is `target/<profile>/examples/server`, which `scripts/test` builds first
//! (`cargo build --example server`); `cargo test` alone compiles examples elsewhere.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// The server binary next to the running test binary (`target/<profile>/deps/<test>-*`).
pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps");
    let bin = profile_dir
        .join("examples")
        .join(format!("server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the demo server binary is missing at {}: build it with `cargo build --example server` \
         (same profile as the tests), as scripts/test does",
        bin.display()
    );
    bin
}

/// One running demo server, killed on drop.
///
/// ```no_run
/// let server = tests::demo_server::DemoServer::start(&[("DB_LATENCY_MS", "1")]);
/// assert_eq!(server.get("/users/7").status, 200);
/// println!("{} queries, {} KiB resident", server.db_queries(), server.rss_kib());
/// ```
#[derive(Debug)]
pub struct DemoServer {
    child: Child,
    addr: SocketAddr,
    output: Arc<Mutex<Vec<String>>>,
}

impl DemoServer {
    /// Starts the server on a free port with `env` (`REDIS_URL`, `DB_LATENCY_MS`, ...; the
    /// database latency defaults to 5 ms here) and waits for its `listening on` line.
    pub fn start(env: &[(&str, &str)]) -> DemoServer {
        let mut cmd = Command::new(server_binary());
        cmd.env("PORT", "0")
            .env("DB_LATENCY_MS", "5")
            .env_remove("REDIS_URL")
            .env_remove("DB_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn the demo server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let output = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(rest) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(rest.trim().to_owned());
                    sent = true;
                }
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            panic!("the demo server did not print `listening on http://ADDR` within 20 s");
        };
        DemoServer {
            child,
            addr: addr
                .parse()
                .expect("a socket address after `listening on http://`"),
            output,
        }
    }

    /// The lines it printed on stdout so far.
    pub fn output(&self) -> Vec<String> {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status of the server");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// `GET path` on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, None)
    }

    /// `PUT path` with a JSON body.
    pub fn put_json(&self, path: &str, body: &str) -> Response {
        request(self.addr, "PUT", path, Some(body))
    }

    /// `/stats` as JSON.
    pub fn stats(&self) -> serde_json::Value {
        self.get("/stats").json()
    }

    /// The database queries run so far (`/stats`' `db_queries`): how often a body ran.
    pub fn db_queries(&self) -> u64 {
        self.stats()["db_queries"]
            .as_u64()
            .expect("/stats has db_queries")
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: String,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect to the demo server");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let _ = stream.set_nodelay(true);
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if let Some(body) = body {
        req.push_str("content-type: application/json\r\n");
        req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    } else {
        req.push_str("\r\n");
    }
    stream.write_all(req.as_bytes()).expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let (status, headers) = parse_head(head);
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A keep-alive HTTP/1.1 connection for load: one request at a time, `Content-Length` bodies
/// (what the demo server sends), no allocation of headers beyond the status.
#[derive(Debug)]
pub struct KeepAlive {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    host: String,
}

impl KeepAlive {
    /// Connects.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(KeepAlive {
            stream: tokio::io::BufReader::new(stream),
            host: addr.to_string(),
        })
    }

    /// `GET path`: the status and the body.
    pub async fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let req = format!("GET {path} HTTP/1.1\r\nhost: {}\r\n\r\n", self.host);
        self.stream.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        let mut status = 0;
        let mut length = 0usize;
        let mut first = true;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if first {
                status = l
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                first = false;
            } else if l.is_empty() {
                break;
            } else if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, body))
    }
}
