//! `rediss://`: the Redis tier over TLS (rustls), against a TLS-only `redis-server` whose
//! certificate is signed by a test CA. Its own binary, because the CA is made trusted through
//! the process environment (`SSL_CERT_FILE`, read by rustls-native-certs).

use std::time::Duration;

use cache_core::RemoteBackend;
use cache_redis::{RedisBackend, RedisConfig};
use tests::RedisServer;

#[tokio::test]
async fn rediss_round_trip_with_a_password() {
    let server = RedisServer::start_tls(&["--requirepass", "tls-pw-3141"]);
    let ca = server.tls_ca_file().expect("a TLS server has a CA file");
    // SAFETY: the only test of this binary, run before any thread reads the environment.
    unsafe { std::env::set_var("SSL_CERT_FILE", ca) };

    let url = server
        .tls_url()
        .replace("rediss://", "rediss://:tls-pw-3141@");
    let b = RedisBackend::new(RedisConfig::standalone(url).namespace("tls"));
    assert!(!b.describe().contains("tls-pw-3141"), "{}", b.describe());
    let t = b.tier("c");
    t.set(
        "k",
        b"over tls".to_vec(),
        Some(Duration::from_secs(60)),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(t.get("k").await.unwrap().as_deref(), Some(&b"over tls"[..]));
    assert!(b.ping().await.unwrap() < Duration::from_secs(1));

    // Plain text to a TLS port fails (bounded), it does not hang or panic.
    let plain = RedisBackend::new(
        RedisConfig::standalone(format!("redis://:tls-pw-3141@127.0.0.1:{}", server.port()))
            .connect_timeout(Duration::from_millis(300))
            .response_timeout(Duration::from_millis(300)),
    );
    let r = tokio::time::timeout(Duration::from_secs(2), plain.tier("c").get("k")).await;
    let err = r.expect("bounded").unwrap_err();
    assert!(!err.to_string().contains("tls-pw-3141"), "{err}");
}
