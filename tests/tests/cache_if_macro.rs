//! What `#[cache_if]` does at run time, counted: a false condition bypasses the cache (no read,
//! no write, counted as `bypassed`), and `result = ..` decides after the body whether its value is
//! stored. Every test runs under its own `CacheManager` with its own cached functions.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use cache_core::{CacheManager, cache_if, cached};

fn manager() -> CacheManager {
    CacheManager::builder().build()
}

fn runs(counter: &AtomicUsize) -> usize {
    counter.load(SeqCst)
}

// --- the condition, checked before the lookup -----------------------------------------------

static WHEN_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "when:{id}")]
#[cache_if(id > 0)]
async fn when_below(id: i64) -> i64 {
    WHEN_RUNS.fetch_add(1, SeqCst);
    id * 10
}

#[tokio::test]
async fn a_false_condition_bypasses_the_cache_entirely() {
    let m = manager();
    let cache = m.cache("default");
    // An entry the function would read if it looked.
    cache.set("when:0", 999_i64).await;
    m.scope(async {
        assert_eq!(
            when_below(0).await,
            0,
            "no read: the stored 999 is not returned"
        );
        assert_eq!(when_below(0).await, 0);
        assert_eq!(when_below(-1).await, -10);
        assert_eq!(runs(&WHEN_RUNS), 3, "the body ran every time");
    })
    .await;
    let stats = cache.stats();
    assert_eq!(stats.bypassed, 3);
    assert_eq!(
        (stats.hits, stats.misses, stats.inserts),
        (0, 0, 1),
        "only our `set`"
    );
    assert_eq!(
        cache.get::<i64>("when:0").await,
        Some(999),
        "no write either"
    );
    assert_eq!(cache.get::<i64>("when:-1").await, None);
}

#[tokio::test]
async fn a_true_condition_caches_as_usual() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[cached(key = "usual:{id}")]
    #[cache_if(id > 0)]
    async fn usual(id: i64) -> i64 {
        RUNS.fetch_add(1, SeqCst);
        id
    }

    let m = manager();
    m.scope(async {
        usual(1).await;
        usual(1).await;
        usual(2).await;
        assert_eq!(runs(&RUNS), 2);
    })
    .await;
    assert_eq!(m.cache("default").stats().bypassed, 0);
}

// --- the result, checked after the body -----------------------------------------------------

static RESULT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "list:{n}")]
#[cache_if(result = |items: &Vec<u32>| !items.is_empty())]
fn list(n: u32) -> Vec<u32> {
    RESULT_RUNS.fetch_add(1, SeqCst);
    (0..n).collect()
}

#[test]
fn result_decides_whether_the_value_is_stored() {
    let m = manager();
    m.scope_sync(|| {
        assert_eq!(list(0), Vec::<u32>::new(), "returned although not stored");
        assert_eq!(list(0), Vec::<u32>::new());
        assert_eq!(runs(&RESULT_RUNS), 2, "an empty list is not cached");
        assert_eq!(list(2), vec![0, 1]);
        assert_eq!(list(2), vec![0, 1]);
        assert_eq!(runs(&RESULT_RUNS), 3, "a non-empty one is");
    });
    assert_eq!(m.cache("default").len(), 1);
}

static RESULT_OK_RUNS: AtomicUsize = AtomicUsize::new(0);

/// The predicate sees the whole return value; of a `Result` only `Ok` is ever stored.
#[cached(key = "find:{q}")]
#[cache_if(result = |r: &Result<Vec<String>, String>| r.as_ref().is_ok_and(|v| v.len() > 1))]
async fn find(q: &str) -> Result<Vec<String>, String> {
    RESULT_OK_RUNS.fetch_add(1, SeqCst);
    match q {
        "" => Err("empty query".to_owned()),
        q => Ok(q.split(',').map(str::to_owned).collect()),
    }
}

#[tokio::test]
async fn result_sees_the_whole_return_value() {
    let m = manager();
    m.scope(async {
        assert!(find("").await.is_err());
        assert_eq!(find("a").await.unwrap(), ["a"]);
        assert_eq!(find("a").await.unwrap(), ["a"]);
        assert_eq!(
            runs(&RESULT_OK_RUNS),
            3,
            "an error and a single hit are not stored"
        );
        find("a,b").await.unwrap();
        find("a,b").await.unwrap();
        assert_eq!(runs(&RESULT_OK_RUNS), 4);
    })
    .await;
}

// --- both forms, both orders, paths ---------------------------------------------------------

static BOTH_RUNS: AtomicUsize = AtomicUsize::new(0);

/// `#[cache_if]` above `#[cached]`: it expands first and hands itself over.
#[cache_if(!name.is_empty(), result = |len: &usize| *len < 10)]
#[cached(cache = "lengths", key = "len:{name}")]
async fn length(name: &str) -> usize {
    BOTH_RUNS.fetch_add(1, SeqCst);
    name.len()
}

#[tokio::test]
async fn both_forms_combine_and_the_order_of_attributes_does_not_matter() {
    let m = manager();
    m.scope(async {
        length("").await;
        length("").await;
        assert_eq!(runs(&BOTH_RUNS), 2, "bypassed");
        length("a very long name").await;
        length("a very long name").await;
        assert_eq!(runs(&BOTH_RUNS), 4, "not stored");
        length("ada").await;
        length("ada").await;
        assert_eq!(runs(&BOTH_RUNS), 5, "cached");
    })
    .await;
    let stats = m.cache("lengths").stats();
    assert_eq!((stats.bypassed, stats.inserts), (2, 1));
}

mod paths {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    pub(crate) static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[cache_core::cache_if(n.is_multiple_of(2))]
    #[::cache_core::cached(key = "even:{n}")]
    pub(crate) fn above(n: u32) -> u32 {
        RUNS.fetch_add(1, SeqCst);
        n
    }

    #[cache_core::cached(key = "odd:{n}")]
    #[::cache_core::cache_if(n % 2 == 1)]
    pub(crate) fn below(n: u32) -> u32 {
        RUNS.fetch_add(1, SeqCst);
        n
    }
}

#[test]
fn qualified_paths_are_recognised_in_either_order() {
    let m = manager();
    m.scope_sync(|| {
        for _ in 0..2 {
            paths::above(2);
            paths::above(3);
            paths::below(3);
            paths::below(2);
        }
        // Cached: above(2), below(3), once each; bypassed: above(3), below(2), twice each.
        assert_eq!(runs(&paths::RUNS), 6);
    });
    assert_eq!(m.cache("default").stats().bypassed, 4);
}

// --- methods and sync functions -------------------------------------------------------------

static METHOD_RUNS: AtomicUsize = AtomicUsize::new(0);

struct Service {
    cacheable: bool,
}

impl Service {
    #[cached(key = "svc:{id}")]
    #[cache_if(self.cacheable)]
    fn get(&self, id: u32) -> Result<u32, String> {
        METHOD_RUNS.fetch_add(1, SeqCst);
        if id == 0 {
            return Err("zero".to_owned());
        }
        Ok(id)
    }

    #[cache_if(self.cacheable && id > 0)]
    #[cached(key = "svc-async:{id}")]
    async fn get_async(&self, id: u32) -> Option<u32> {
        METHOD_RUNS.fetch_add(1, SeqCst);
        Some(id)
    }
}

#[tokio::test]
async fn methods_read_self_in_the_condition() {
    let m = manager();
    m.scope(async {
        let on = Service { cacheable: true };
        let off = Service { cacheable: false };
        on.get(1).unwrap();
        on.get(1).unwrap();
        off.get(1).unwrap();
        off.get(1).unwrap();
        assert_eq!(runs(&METHOD_RUNS), 3);
        assert!(on.get(0).is_err(), "`?`-style early returns still work");
        on.get_async(1).await;
        on.get_async(1).await;
        off.get_async(1).await;
        on.get_async(0).await;
        assert_eq!(runs(&METHOD_RUNS), 7);
    })
    .await;
    assert_eq!(m.cache("default").stats().bypassed, 4);
}

// --- a bypassed call does not build its key ---------------------------------------------------

static GUARDED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A key that only exists when the condition holds: the first item of a non-empty list.
#[cached(key = items[0].clone())]
#[cache_if(!items.is_empty())]
fn first_item(items: Vec<String>) -> Option<String> {
    GUARDED_RUNS.fetch_add(1, SeqCst);
    items.first().cloned()
}

static KEY_RENDERS: AtomicUsize = AtomicUsize::new(0);

/// An argument that counts how often the key and tag templates render it.
struct Counted(u32);

impl std::fmt::Display for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        KEY_RENDERS.fetch_add(1, SeqCst);
        write!(f, "{}", self.0)
    }
}

#[cached(key = "counted:{n}", tags = ["counted:{n}"])]
#[cache_if(n.0 > 0)]
async fn counted(n: Counted) -> u32 {
    n.0
}

#[test]
fn a_bypassed_call_does_not_render_a_key_its_condition_rules_out() {
    let m = manager();
    m.scope_sync(|| {
        assert_eq!(first_item(Vec::new()), None, "bypassed, not a panic");
        assert_eq!(first_item(vec!["a".to_owned()]).as_deref(), Some("a"));
        assert_eq!(first_item(vec!["a".to_owned()]).as_deref(), Some("a"));
        assert_eq!(runs(&GUARDED_RUNS), 2, "the empty list ran, `a` once");
    });
    let stats = m.cache("default").stats();
    assert_eq!((stats.bypassed, stats.hits), (1, 1));
}

#[tokio::test]
async fn a_bypassed_call_renders_neither_its_key_nor_its_tags() {
    let m = manager();
    m.scope(async {
        assert_eq!(counted(Counted(0)).await, 0);
        assert_eq!(
            KEY_RENDERS.load(SeqCst),
            0,
            "the cache is not used: nothing to render"
        );
        assert_eq!(counted(Counted(7)).await, 7);
        assert_eq!(
            KEY_RENDERS.load(SeqCst),
            2,
            "a cached call renders key and tag"
        );
    })
    .await;
    assert_eq!(m.cache("default").stats().bypassed, 1);
}

static SCOPED_RUNS: AtomicUsize = AtomicUsize::new(0);

struct Repo;

impl Repo {
    /// A default key in an `impl`, rendered only when the condition holds: it still starts with
    /// the scope its companion names, so `#[invalidates(Self::load(..))]` reaches it.
    #[cached]
    #[cache_if(id > 0)]
    pub(crate) async fn load(&self, id: u64) -> u64 {
        SCOPED_RUNS.fetch_add(1, SeqCst);
        id
    }

    #[cache_core::invalidates(Self::load(self, id))]
    async fn forget(&self, id: u64) {}
}

#[tokio::test]
async fn a_conditional_default_key_is_the_one_its_companion_derives() {
    let m = manager();
    m.scope(async {
        let repo = Repo;
        repo.load(3).await;
        repo.load(3).await;
        assert_eq!(runs(&SCOPED_RUNS), 1);
        repo.forget(3).await;
        repo.load(3).await;
        assert_eq!(runs(&SCOPED_RUNS), 2, "the invalidation found the entry");
    })
    .await;
}
