use cache_core::cached;

#[derive(Clone, Debug, PartialEq)]
struct User {
    id: u64,
    name: String,
}

#[cached(ttl = 1800, key = "user:{id}", cache = "users", tags = ["user:{id}", "users"])]
async fn get_user(id: u64) -> Result<User, String> {
    if id == 0 {
        return Err("no user 0".to_owned());
    }
    let name = format!("user {id}");
    Ok(User { id, name })
}

#[cached]
async fn answer() -> u32 {
    42
}

#[cached(ttl = "1h30m")]
async fn lookup(name: String, verbose: bool) -> Option<String> {
    verbose.then_some(name)
}

/// The hit is answered inside the function under an epoch guard, which is not `Send`: the
/// guard must be gone before the miss is awaited, so the future stays `Send` (and `'static`
/// with owned arguments, as `tokio::spawn` needs).
fn assert_spawnable<F: std::future::Future + Send + 'static>(_: &F) {}

fn main() {
    assert_spawnable(&get_user(1));
    assert_spawnable(&lookup("a".to_owned(), true));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(get_user(7).await.unwrap().id, 7);
        assert_eq!(get_user(7).await.unwrap().name, "user 7");
        assert!(get_user(0).await.is_err());
        assert_eq!(answer().await, 42);
        assert_eq!(lookup("a".to_owned(), true).await.as_deref(), Some("a"));
    });
}
