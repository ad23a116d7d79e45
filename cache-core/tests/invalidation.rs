//! Invalidation by tag, pattern and event, and the escaping that keeps argument values from acting
//! as wildcards.

use cache_core::testing::MemoryBackend;
use cache_core::{
    CacheManager, EntryOptions, Event, EventArgs, EventError, Policy, Tier, escape_glob,
    escape_key_part,
};

async fn seeded() -> CacheManager {
    let m = CacheManager::default();
    let users = m.cache("users");
    for id in ["1", "2", "10", "*", "1*"] {
        let key = format!("user:{}", escape_key_part(id));
        users
            .set_with(
                &key,
                id.to_string(),
                EntryOptions::new().tag(format!("user:{}", escape_key_part(id))),
            )
            .await;
        users.set(&format!("{key}:videos"), 0_u32).await;
    }
    m
}

#[tokio::test]
async fn a_pattern_removes_only_matching_keys() {
    let m = seeded().await;
    // A pattern the developer wrote is a real glob: it also matches the user whose id is `1*`
    // (stored as `user:1\*`).
    assert_eq!(m.invalidate_pattern("users", "user:1*").await, 6);
    assert_eq!(
        m.cache("users").get::<String>("user:2").await.as_deref(),
        Some("2")
    );
    assert_eq!(
        m.cache("users").get::<String>("user:\\*").await.as_deref(),
        Some("*")
    );
}

#[tokio::test]
async fn an_escaped_star_removes_only_the_user_named_star() {
    let m = seeded().await;
    // What pattern templates do with a value: key-escape it, then glob-escape it.
    let pattern = format!("user:{}", escape_glob(&escape_key_part("*")));
    assert_eq!(m.invalidate_pattern("users", &pattern).await, 1);
    assert_eq!(m.cache("users").len(), 9);
    assert_eq!(m.cache("users").get::<String>("user:\\*").await, None);
    assert_eq!(
        m.cache("users").get::<String>("user:1").await.as_deref(),
        Some("1")
    );

    let pattern = format!("user:{}:*", escape_glob(&escape_key_part("1*")));
    assert_eq!(
        m.invalidate_pattern("users", &pattern).await,
        1,
        "only user:1*'s videos"
    );
    assert_eq!(m.cache("users").get::<u32>("user:1:videos").await, Some(0));
}

#[tokio::test]
async fn tags_cross_caches() {
    let m = CacheManager::default();
    m.cache("users")
        .set_with("user:1", 1, EntryOptions::new().tag("user:1"))
        .await;
    m.cache("videos")
        .set_with("video:9", 9, EntryOptions::new().tag("user:1"))
        .await;
    m.cache("videos")
        .set_with("video:8", 8, EntryOptions::new().tag("user:2"))
        .await;
    assert_eq!(m.invalidate_tag("user:1").await, 2);
    assert_eq!(m.cache("videos").get::<i32>("video:8").await, Some(8));
    assert_eq!(m.cache("users").stats().invalidations, 1);
}

#[tokio::test]
async fn a_tag_named_star_is_just_a_tag() {
    let m = CacheManager::default();
    m.cache("c")
        .set_with("a", 1, EntryOptions::new().tag("user:1"))
        .await;
    assert_eq!(m.invalidate_tag("*").await, 0);
    assert_eq!(m.invalidate_tag("user:*").await, 0);
    assert_eq!(m.cache("c").len(), 1);
}

#[tokio::test]
async fn events_invalidate_their_targets_with_escaped_arguments() {
    let m = seeded().await;
    m.cache("search").set("search:rust", 1).await;
    m.register_event(
        Event::new("user_update", ["user_id"])
            .key("users", "user:{user_id}")
            .pattern("users", "user:{user_id}:*")
            .cache("search"),
    )
    .unwrap();
    let removed = m
        .fire("user_update", &EventArgs::new().arg("user_id", "*"))
        .await
        .unwrap();
    assert_eq!(
        removed,
        1 + 1 + 1,
        "user:\\*, its videos, and the search cache"
    );
    assert_eq!(m.cache("users").len(), 8, "every other user stays");
    assert!(m.cache("search").is_empty());
}

#[tokio::test]
async fn event_tags_render_like_keys() {
    let m = seeded().await;
    m.register_event(Event::new("profile", ["id"]).tag("user:{id}"))
        .unwrap();
    assert_eq!(
        m.fire("profile", &EventArgs::new().arg("id", 2))
            .await
            .unwrap(),
        1
    );
    assert_eq!(m.cache("users").get::<String>("user:2").await, None);
}

#[test]
fn an_unknown_placeholder_is_rejected_at_registration() {
    let m = CacheManager::default();
    let err = m
        .register_event(Event::new("user_update", ["user_id"]).pattern("users", "user:{uid}:*"))
        .unwrap_err();
    assert!(matches!(err, EventError::UnknownPlaceholder { .. }));
    assert_eq!(
        err.to_string(),
        "event `user_update`: template `user:{uid}:*` uses `{uid}`, which is not a parameter of the event (parameters: `user_id`)"
    );
    let err = m
        .register_event(Event::new("e", ["a"]).key("c", "x:{a"))
        .unwrap_err();
    assert!(err.to_string().contains("unclosed `{`"), "{err}");
}

#[tokio::test]
async fn firing_with_a_missing_or_unexpected_argument_is_rejected_and_removes_nothing() {
    let m = seeded().await;
    m.register_event(Event::new("user_update", ["user_id"]).cache("users"))
        .unwrap();
    let err = m.fire("user_update", &EventArgs::new()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "event `user_update` was fired without its argument `user_id`"
    );
    let err = m
        .fire(
            "user_update",
            &EventArgs::new().arg("user_id", 1).arg("usr_id", 1),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "event `user_update` has no parameter `usr_id`"
    );
    let err = m.fire("nope", &EventArgs::new()).await.unwrap_err();
    assert_eq!(err, EventError::UnknownEvent("nope".into()));
    assert_eq!(m.cache("users").len(), 10);
}

/// A computation that started before an invalidation and ends after it answers its caller but is
/// not stored: no later read may return data older than an invalidation that already returned.
#[tokio::test]
async fn a_value_computed_across_an_invalidation_is_not_stored() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let m = CacheManager::default();
    for invalidate_all in [false, true] {
        let c = m.cache(if invalidate_all {
            "race-all"
        } else {
            "race-key"
        });
        let runs = AtomicUsize::new(0);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let leader = c.get_or_insert_with("user:1", || async {
            runs.fetch_add(1, Ordering::SeqCst);
            started_tx.send(()).unwrap();
            release_rx.await.unwrap();
            "old".to_string()
        });
        let invalidator = async {
            started_rx.await.unwrap();
            if invalidate_all {
                m.invalidate_cache(c.name()).await;
            } else {
                m.invalidate_key(c.name(), "user:1").await;
            }
            release_tx.send(()).unwrap();
        };
        let (value, ()) = tokio::join!(leader, invalidator);
        assert_eq!(value, "old", "the overlapping caller gets its answer");
        assert!(c.is_empty(), "but it is not stored");
        let again = c.get_or_insert_with("user:1", || async {
            runs.fetch_add(1, Ordering::SeqCst);
            "new".to_string()
        });
        assert_eq!(again.await, "new");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}

/// Counts are of entries removed from memory, whatever the pattern: a literal pattern (one key,
/// deleted without a scan) and an event's key count the same as a glob does. Instance B of a
/// hybrid cache holds no copy of a key instance A wrote, which Redis (here the in-process
/// backend the two share) holds: removing it removes nothing from B's memory.
#[tokio::test]
async fn literal_patterns_and_event_keys_count_only_what_left_memory() {
    use cache_core::testing::MemoryBackend;
    use cache_core::{Policy, Tier};

    let backend = MemoryBackend::new();
    let instance = || {
        CacheManager::builder()
            .remote(backend.clone())
            .cache("users", Policy::new().tier(Tier::Hybrid))
            .build()
    };
    let (a, b) = (instance(), instance());
    for m in [&a, &b] {
        assert!(
            m.backplane_subscribed(std::time::Duration::from_secs(5))
                .await
        );
    }
    let users_b = b.cache("users");
    b.register_event(Event::new("user_update", ["id"]).key("users", "user:{id}"))
        .unwrap();

    a.cache("users").set("user:1", 1_u32).await;
    assert_eq!(users_b.len(), 0, "B holds no copy");
    assert_eq!(users_b.invalidate_pattern("user:1").await, 0);

    a.cache("users").set("user:2", 2_u32).await;
    assert_eq!(users_b.len(), 0, "B holds no copy");
    let fired = b
        .fire("user_update", &EventArgs::new().arg("id", 2))
        .await
        .unwrap();
    assert_eq!(fired, 0);

    // The same state through a glob, for comparison: nothing in B's memory, nothing counted.
    a.cache("users").set("user:3", 3_u32).await;
    assert_eq!(users_b.invalidate_pattern("user:3*").await, 0);
    // Each key did leave the shared remote tier.
    for key in ["user:1", "user:2", "user:3"] {
        assert_eq!(backend.raw("users", key), None, "{key}");
    }
}

#[tokio::test]
async fn invalidating_a_cache_that_does_not_exist_creates_none() {
    // Each invalidation of a name that was never used created a cache of that name (about 80 KiB
    // of counters, hot-key sketch and maps), so invalidations of distinct names, which hold
    // nothing to remove, grew the manager without bound.
    let m = seeded().await;
    for i in 0..1_000 {
        let name = format!("absent:{i}");
        assert!(!m.invalidate_key(&name, "user:1").await);
        assert_eq!(m.invalidate_pattern(&name, "user:*").await, 0);
        assert_eq!(m.invalidate_cache(&name).await, 0);
    }
    m.register_event(Event::new("gone", ["id"]).key("absent:event", "user:{id}"))
        .unwrap();
    assert_eq!(
        m.fire("gone", &EventArgs::new().arg("id", 1))
            .await
            .unwrap(),
        0
    );
    let names = m.cache_names();
    assert_eq!(
        names.len(),
        1,
        "{} caches, from {:?}",
        names.len(),
        &names[..names.len().min(3)]
    );
}

#[tokio::test]
async fn an_invalidation_reaches_the_remote_tier_of_a_cache_not_used_here() {
    // Another instance (or an earlier process) may have written it there.
    let backend = MemoryBackend::new();
    let instance = || {
        CacheManager::builder()
            .remote(backend.clone())
            .cache("users", Policy::new().tier(Tier::Remote))
            .build()
    };
    instance().cache("users").set("user:1", 1_u32).await;
    assert_eq!(backend.len(), 1);
    assert!(instance().invalidate_key("users", "user:1").await);
    assert!(backend.is_empty());
}
