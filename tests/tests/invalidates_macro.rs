//! What `#[invalidates]` does at run time, counted: each test caches a value, runs an
//! invalidating function, and counts how often the cached body runs afterwards. Every test runs
//! under its own `CacheManager`, and each has its own cached functions, so tests share no state.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use cache_core::{CacheManager, cached, invalidates};

fn manager() -> CacheManager {
    CacheManager::builder().build()
}

fn runs(counter: &AtomicUsize) -> usize {
    counter.load(SeqCst)
}

// --- key ------------------------------------------------------------------------------------

static KEY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "user:{id}")]
async fn key_user(id: u64) -> Result<String, String> {
    KEY_RUNS.fetch_add(1, SeqCst);
    Ok(format!("user {id}"))
}

#[invalidates(cache = "users", key = "user:{id}")]
async fn key_update(id: u64) -> Result<(), String> {
    let _ = id;
    Ok(())
}

#[tokio::test]
async fn a_key_is_invalidated_and_cached_again() {
    let m = manager();
    m.scope(async {
        key_user(1).await.unwrap();
        key_user(2).await.unwrap();
        key_user(1).await.unwrap();
        assert_eq!(runs(&KEY_RUNS), 2);

        key_update(1).await.unwrap();
        key_user(1).await.unwrap();
        assert_eq!(
            runs(&KEY_RUNS),
            3,
            "user 1 was invalidated and loaded again"
        );
        key_user(1).await.unwrap();
        key_user(2).await.unwrap();
        assert_eq!(runs(&KEY_RUNS), 3, "cached again; user 2 untouched");
    })
    .await;
}

// --- keys -----------------------------------------------------------------------------------

static KEYS_USER_RUNS: AtomicUsize = AtomicUsize::new(0);
static KEYS_PROFILE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "user:{id}")]
async fn keys_user(id: u64) -> String {
    KEYS_USER_RUNS.fetch_add(1, SeqCst);
    format!("user {id}")
}

#[cached(key = "profile:{id}:{lang}")]
async fn keys_profile(id: u64, lang: &str) -> String {
    KEYS_PROFILE_RUNS.fetch_add(1, SeqCst);
    format!("profile {id} {lang}")
}

#[invalidates(keys = ["user:{id}", "profile:{id}:{lang}"])]
async fn keys_update(id: u64, lang: &str) {
    let _ = (id, lang);
}

#[tokio::test]
async fn several_keys_are_invalidated() {
    let m = manager();
    m.scope(async {
        keys_user(1).await;
        keys_profile(1, "en").await;
        keys_profile(1, "fr").await;
        keys_update(1, "en").await;
        keys_user(1).await;
        keys_profile(1, "en").await;
        keys_profile(1, "fr").await;
        assert_eq!(runs(&KEYS_USER_RUNS), 2);
        assert_eq!(
            runs(&KEYS_PROFILE_RUNS),
            3,
            "only the `en` profile was invalidated"
        );
    })
    .await;
}

// --- tags -----------------------------------------------------------------------------------

static TAG_A_RUNS: AtomicUsize = AtomicUsize::new(0);
static TAG_B_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "a", tags = ["user:{id}"])]
async fn tagged_a(id: u64) -> u64 {
    TAG_A_RUNS.fetch_add(1, SeqCst);
    id
}

#[cached(cache = "b", key = "b:{id}", tags = ["user:{id}"])]
fn tagged_b(id: u64) -> u64 {
    TAG_B_RUNS.fetch_add(1, SeqCst);
    id * 10
}

#[invalidates(tags = ["user:{id}"])]
async fn tag_update(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[tokio::test]
async fn a_tag_is_invalidated_in_every_cache() {
    let m = manager();
    m.scope(async {
        tagged_a(1).await;
        tagged_a(2).await;
        tagged_b(1);
        assert_eq!(tag_update(1).await, Ok(1));
        tagged_a(1).await;
        tagged_a(2).await;
        tagged_b(1);
        assert_eq!(runs(&TAG_A_RUNS), 3, "user 1 again, user 2 still cached");
        assert_eq!(runs(&TAG_B_RUNS), 2);
        tagged_a(1).await;
        tagged_b(1);
        assert_eq!((runs(&TAG_A_RUNS), runs(&TAG_B_RUNS)), (3, 2));
    })
    .await;
}

// --- patterns -------------------------------------------------------------------------------

static SEARCH_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "search", key = "search:{user}:{query}")]
async fn search(user: &str, query: &str) -> Vec<String> {
    SEARCH_RUNS.fetch_add(1, SeqCst);
    vec![format!("{user}/{query}")]
}

#[invalidates(cache = "search", pattern = "search:{user}:*")]
async fn forget_searches(user: &str) {
    let _ = user;
}

#[tokio::test]
async fn a_pattern_removes_the_matching_keys() {
    let m = manager();
    m.scope(async {
        search("ada", "rust").await;
        search("ada", "redis").await;
        search("bob", "rust").await;
        assert_eq!(runs(&SEARCH_RUNS), 3);
        forget_searches("ada").await;
        assert_eq!(m.cache("search").len(), 1);
        search("ada", "rust").await;
        search("ada", "redis").await;
        search("bob", "rust").await;
        assert_eq!(
            runs(&SEARCH_RUNS),
            5,
            "ada's two searches ran again, bob's did not"
        );
    })
    .await;
}

static GLOB_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "globs", key = "user:{id}:posts:{page}")]
fn posts(id: &str, page: u32) -> String {
    GLOB_RUNS.fetch_add(1, SeqCst);
    format!("{id}/{page}")
}

#[invalidates(cache = "globs", patterns = ["user:{id}:posts:*"])]
fn forget_posts(id: &str) {
    let _ = id;
}

/// A security property: argument values in a pattern are escaped, so a user id of `*` (or
/// `1*`, or `?`) names only that user's entries, never everyone's.
#[test]
fn an_id_of_star_in_a_pattern_removes_only_that_users_entries() {
    let m = manager();
    m.scope_sync(|| {
        for id in ["1", "12", "*", "1*", "?", "[1]"] {
            posts(id, 1);
            posts(id, 2);
        }
        assert_eq!(runs(&GLOB_RUNS), 12);
        let cache = m.cache("globs");

        forget_posts("*");
        assert_eq!(cache.len(), 10, "only the two entries of user `*`");
        forget_posts("1*");
        assert_eq!(cache.len(), 8, "only user `1*`, not `1` or `12`");
        forget_posts("?");
        forget_posts("[1]");
        assert_eq!(cache.len(), 4, "`?` and `[1]` matched only themselves");

        for id in ["1", "12"] {
            posts(id, 1);
            posts(id, 2);
        }
        assert_eq!(
            runs(&GLOB_RUNS),
            12,
            "users `1` and `12` were never touched"
        );
        posts("*", 1);
        assert_eq!(runs(&GLOB_RUNS), 13);
    });
}

// --- a named cache, all of it ---------------------------------------------------------------

static ALL_RUNS: AtomicUsize = AtomicUsize::new(0);
static OTHER_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "catalog")]
async fn product(id: u32) -> String {
    ALL_RUNS.fetch_add(1, SeqCst);
    format!("product {id}")
}

#[cached(cache = "other")]
async fn unrelated(id: u32) -> u32 {
    OTHER_RUNS.fetch_add(1, SeqCst);
    id
}

#[invalidates(cache = "catalog", all = true)]
async fn reload_catalog() {}

#[tokio::test]
async fn all_empties_the_named_cache_only() {
    let m = manager();
    m.scope(async {
        product(1).await;
        product(2).await;
        unrelated(1).await;
        reload_catalog().await;
        assert_eq!(m.cache("catalog").len(), 0);
        assert_eq!(m.cache("other").len(), 1);
        product(1).await;
        product(2).await;
        unrelated(1).await;
        assert_eq!(runs(&ALL_RUNS), 4);
        assert_eq!(runs(&OTHER_RUNS), 1);
    })
    .await;
}

// --- the type-checked form ------------------------------------------------------------------

static CHECKED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", ttl = "10m", key = "checked:{id}")]
async fn checked_user(id: u64) -> Result<String, String> {
    CHECKED_RUNS.fetch_add(1, SeqCst);
    Ok(format!("user {id}"))
}

#[invalidates(checked_user(id))]
async fn checked_update(id: u64, name: String) -> Result<String, String> {
    Ok(name)
}

#[tokio::test]
async fn a_cached_function_named_with_its_arguments_is_invalidated() {
    let m = manager();
    m.scope(async {
        checked_user(7).await.unwrap();
        checked_user(8).await.unwrap();
        checked_update(7, "Ada".into()).await.unwrap();
        checked_user(7).await.unwrap();
        checked_user(8).await.unwrap();
        assert_eq!(runs(&CHECKED_RUNS), 3);
        checked_user(7).await.unwrap();
        assert_eq!(runs(&CHECKED_RUNS), 3);
    })
    .await;
}

/// Cached functions in another module, named by path; one of them with a default key (a hash
/// of the arguments), which the companion derives exactly as the function does.
mod users {
    use super::*;

    pub(crate) static PROFILE_RUNS: AtomicUsize = AtomicUsize::new(0);
    pub(crate) static SETTINGS_RUNS: AtomicUsize = AtomicUsize::new(0);

    #[cached(cache = "profiles", key = "profile:{id}")]
    pub(crate) async fn profile(id: u64) -> String {
        PROFILE_RUNS.fetch_add(1, SeqCst);
        format!("profile {id}")
    }

    #[cached]
    pub(crate) fn settings(id: u64, section: &str) -> Option<String> {
        SETTINGS_RUNS.fetch_add(1, SeqCst);
        Some(format!("{id}/{section}"))
    }
}

#[invalidates(crate::users::profile(id), users::settings(id, "mail"))]
async fn profile_update(id: u64) -> Result<(), String> {
    let _ = id;
    Ok(())
}

#[tokio::test]
async fn cached_functions_of_other_modules_are_invalidated() {
    let m = manager();
    m.scope(async {
        users::profile(1).await;
        users::settings(1, "mail");
        users::settings(1, "ui");
        profile_update(1).await.unwrap();
        users::profile(1).await;
        users::settings(1, "mail");
        users::settings(1, "ui");
        assert_eq!(runs(&users::PROFILE_RUNS), 2);
        assert_eq!(
            runs(&users::SETTINGS_RUNS),
            3,
            "`mail` again, `ui` still cached"
        );
    })
    .await;
}

/// Default keys of every argument shape, invalidated through their companions: the companion
/// must render exactly the function's key, or the entry would survive.
mod shapes {
    use super::*;
    use serde::Serialize;

    pub(crate) static RUNS: AtomicUsize = AtomicUsize::new(0);

    pub(crate) struct Path<T>(pub(crate) T);

    #[derive(Serialize)]
    pub(crate) struct Query {
        pub(crate) page: u32,
    }

    #[cached]
    pub(crate) fn by_path(Path(id): Path<u64>, (a, b): (u8, u8)) -> u64 {
        RUNS.fetch_add(1, SeqCst);
        id + u64::from(a) + u64::from(b)
    }

    #[cached]
    #[allow(clippy::toplevel_ref_arg)] // on purpose: every binding mode
    pub(crate) fn by_ref(&x: &u32, ref y: String, mut z: i64) -> i64 {
        RUNS.fetch_add(1, SeqCst);
        z += 1;
        i64::from(x) + y.len() as i64 + z
    }

    #[cached]
    pub(crate) fn by_impl(value: impl Serialize + std::fmt::Debug, query: &Query) -> String {
        RUNS.fetch_add(1, SeqCst);
        format!("{value:?}{}", query.page)
    }

    #[cached]
    pub(crate) fn by_type<T: Default + Serialize>(n: u8) -> usize {
        RUNS.fetch_add(1, SeqCst);
        std::mem::size_of::<T>() + usize::from(n)
    }

    #[cached(key = "hashed:{email:hash}:{name:lower}:{n}")]
    pub(crate) fn formatted(email: &str, name: &str, n: i32) -> String {
        RUNS.fetch_add(1, SeqCst);
        format!("{email}{name}{n}")
    }

    /// A reference to a type parameter: `T` is what the function's callers infer (`str` for a
    /// `&str`), which the key spells.
    #[cached]
    pub(crate) fn by_generic_ref<T: ?Sized + Serialize>(value: &T) -> usize {
        RUNS.fetch_add(1, SeqCst);
        std::mem::size_of_val(value)
    }

    #[cached]
    pub(crate) fn by_impl_ref(value: &(impl Serialize + ?Sized)) -> usize {
        RUNS.fetch_add(1, SeqCst);
        std::mem::size_of_val(value)
    }

    #[cached]
    pub(crate) fn by_generic_ref_ref<T: ?Sized + Serialize>(value: &&T) -> usize {
        RUNS.fetch_add(1, SeqCst);
        std::mem::size_of_val(*value)
    }
}

#[invalidates(
    shapes::by_path(shapes::Path(id), (1, 2)),
    shapes::by_ref(&x, y.clone(), -3),
    shapes::by_impl(x, &shapes::Query { page: 2 }),
    shapes::by_type::<u16>(4),
    shapes::formatted(y.as_str(), "ADA", -5),
    shapes::by_generic_ref(y.as_str()),
    shapes::by_impl_ref(&x),
    shapes::by_generic_ref_ref(&y.as_str()),
)]
fn shapes_update(id: u64, x: u32, y: String) {
    let _ = (id, x, y);
}

#[test]
fn companions_render_the_same_keys_as_their_functions() {
    let m = manager();
    m.scope_sync(|| {
        let call_all = || {
            shapes::by_path(shapes::Path(5), (1, 2));
            shapes::by_ref(&9, "why".to_owned(), -3);
            shapes::by_impl(9u32, &shapes::Query { page: 2 });
            shapes::by_type::<u16>(4);
            shapes::formatted("why", "ADA", -5);
            shapes::by_generic_ref("why");
            shapes::by_impl_ref(&9u32);
            shapes::by_generic_ref_ref(&"why");
        };
        call_all();
        call_all();
        assert_eq!(runs(&shapes::RUNS), 8);
        shapes_update(5, 9, "why".to_owned());
        assert_eq!(
            m.cache("default").len(),
            0,
            "every entry was found by its companion"
        );
        call_all();
        assert_eq!(runs(&shapes::RUNS), 16);
    });
}

// --- methods --------------------------------------------------------------------------------

static REPO_RUNS: AtomicUsize = AtomicUsize::new(0);

struct Repo {
    name: &'static str,
}

impl Repo {
    #[cached(cache = "repos", key = "repo:{self.name}:{id}")]
    pub(crate) fn get(&self, id: u32) -> String {
        REPO_RUNS.fetch_add(1, SeqCst);
        format!("{}#{id}", self.name)
    }

    #[cached(cache = "repos")]
    pub(self) async fn count(&self, kind: &str) -> usize {
        REPO_RUNS.fetch_add(1, SeqCst);
        kind.len()
    }

    #[invalidates(Self::get(self, id))]
    fn set(&self, id: u32) -> Result<(), String> {
        let _ = id;
        Ok(())
    }

    #[invalidates(self.get(id), self.count(kind))]
    async fn set_async(&mut self, id: u32, kind: &str) {
        let _ = (id, kind);
    }
}

#[tokio::test]
async fn methods_invalidate_through_self() {
    let m = manager();
    m.scope(async {
        let mut repo = Repo { name: "cache" };
        let other = Repo { name: "other" };
        repo.get(1);
        other.get(1);
        repo.count("users").await;
        assert_eq!(runs(&REPO_RUNS), 3);

        repo.set(1).unwrap();
        repo.get(1);
        other.get(1);
        assert_eq!(runs(&REPO_RUNS), 4, "only this repo's entry");

        repo.set_async(1, "users").await;
        repo.get(1);
        repo.count("users").await;
        assert_eq!(runs(&REPO_RUNS), 6);
        repo.get(1);
        repo.count("users").await;
        assert_eq!(runs(&REPO_RUNS), 6);
    })
    .await;
}

/// A `#[cached]` function declared inside another function: its default key names the function
/// it is in, and its companion renders that same key.
#[tokio::test]
async fn a_local_function_is_invalidated_by_its_own_key() {
    static LOCAL_RUNS: AtomicUsize = AtomicUsize::new(0);

    #[cached(cache = "local")]
    async fn local_user(id: u64) -> String {
        LOCAL_RUNS.fetch_add(1, SeqCst);
        format!("user {id}")
    }

    #[invalidates(local_user(id))]
    async fn rename(id: u64) {
        let _ = id;
    }

    let m = manager();
    m.scope(async {
        local_user(1).await;
        local_user(1).await;
        local_user(2).await;
        assert_eq!(runs(&LOCAL_RUNS), 2);
        rename(1).await;
        local_user(1).await;
        local_user(2).await;
        assert_eq!(runs(&LOCAL_RUNS), 3, "only id 1's entry");
    })
    .await;
    assert_eq!(m.cache("local").len(), 2);
}

static LOCAL_NAME_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "local-names")]
pub(crate) async fn named_like_locals(__k: u64, __p: u64) -> u64 {
    LOCAL_NAME_RUNS.fetch_add(1, SeqCst);
    __k + __p
}

/// Arguments named like the expansions' locals (`__k`, `__p`, `__t`): each is the argument, in
/// the companion's key, in a template and in a pattern.
#[invalidates(
    named_like_locals(__k, __p),
    cache = "local-names",
    key = "k:{__k}",
    pattern = "p:{__p}*",
    tags = ["t:{__t}"]
)]
async fn change_named_like_locals(__k: u64, __p: u64, __t: u64) {
    let _ = (__k, __p, __t);
}

#[tokio::test]
async fn arguments_named_like_the_expansions_locals_are_the_arguments() {
    let m = manager();
    m.scope(async {
        named_like_locals(1, 2).await;
        named_like_locals(1, 2).await;
        named_like_locals(2, 1).await;
        assert_eq!(runs(&LOCAL_NAME_RUNS), 2);
        let cache = m.cache("local-names");
        cache.set("k:7", 0u8).await;
        cache.set("p:8:x", 0u8).await;
        change_named_like_locals(1, 2, 9).await;
        assert_eq!(
            cache.get::<u8>("k:7").await,
            Some(0),
            "not `k:{{__k}}` of 1"
        );
        named_like_locals(1, 2).await;
        named_like_locals(2, 1).await;
        assert_eq!(runs(&LOCAL_NAME_RUNS), 3, "only (1, 2)'s entry");
        change_named_like_locals(7, 8, 9).await;
        assert_eq!(cache.get::<u8>("k:7").await, None);
        assert_eq!(cache.get::<u8>("p:8:x").await, None);
    })
    .await;
}

// --- timing ---------------------------------------------------------------------------------

static TIMING_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "timing:{id}")]
async fn timing_user(id: u64) -> String {
    TIMING_RUNS.fetch_add(1, SeqCst);
    format!("user {id}")
}

#[invalidates(timing_user(id))]
async fn failing_update(id: u64, fail: bool) -> Result<u64, String> {
    if fail {
        return Err("rejected".to_owned());
    }
    let parsed: u64 = "1".parse().map_err(|_| String::new())?;
    Ok(id + parsed)
}

#[tokio::test]
async fn a_failed_update_does_not_invalidate() {
    let m = manager();
    m.scope(async {
        timing_user(1).await;
        assert_eq!(failing_update(1, true).await, Err("rejected".to_owned()));
        timing_user(1).await;
        assert_eq!(runs(&TIMING_RUNS), 1, "the `Err` left the entry in place");
        assert_eq!(failing_update(1, false).await, Ok(2));
        timing_user(1).await;
        assert_eq!(runs(&TIMING_RUNS), 2, "the `Ok` removed it");
    })
    .await;
}

static BEFORE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "before:{id}")]
fn before_user(id: u64) -> String {
    BEFORE_RUNS.fetch_add(1, SeqCst);
    format!("user {id}")
}

/// Reads the user inside the body: with `before = true` the read already misses.
#[invalidates(before_user(id), before = true)]
fn before_update(id: u64) -> Result<String, String> {
    let seen = before_user(id);
    Err(format!("failed after reading {seen}"))
}

#[test]
fn before_invalidates_first_even_when_the_body_fails() {
    let m = manager();
    m.scope_sync(|| {
        before_user(1);
        assert_eq!(runs(&BEFORE_RUNS), 1);
        assert!(before_update(1).is_err());
        assert_eq!(runs(&BEFORE_RUNS), 2, "the body's read missed");
        // The body's read cached the value again; `before` does nothing after the body.
        before_user(1);
        assert_eq!(runs(&BEFORE_RUNS), 2);
    });
}

static OPTION_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "opt:{id}")]
fn option_user(id: u64) -> u64 {
    OPTION_RUNS.fetch_add(1, SeqCst);
    id
}

type Outcome<T> = Result<T, String>;

/// Not a `Result`: always a success, `None` included.
#[invalidates(option_user(id))]
fn option_update(id: u64) -> Option<u64> {
    let _ = id;
    None
}

/// An alias of `Result` is a `Result`: the compiler decides, not the type's name.
#[invalidates(option_user(id))]
fn alias_update(id: u64, fail: bool) -> Outcome<()> {
    let _ = id;
    if fail { Err("no".to_owned()) } else { Ok(()) }
}

#[test]
fn success_is_decided_by_the_return_type() {
    let m = manager();
    m.scope_sync(|| {
        option_user(1);
        assert_eq!(option_update(1), None);
        option_user(1);
        assert_eq!(runs(&OPTION_RUNS), 2, "`None` is not a failure");
        assert!(alias_update(1, true).is_err());
        option_user(1);
        assert_eq!(runs(&OPTION_RUNS), 2, "an `Err` through an alias is one");
        alias_update(1, false).unwrap();
        option_user(1);
        assert_eq!(runs(&OPTION_RUNS), 3);
    });
}

static ARGS_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "args:{id}")]
async fn args_user(id: u64) -> u64 {
    ARGS_RUNS.fetch_add(1, SeqCst);
    id
}

/// The keys are rendered from the arguments as passed, before the body changes them.
#[invalidates(key = "args:{id}")]
async fn args_update(mut id: u64) -> u64 {
    id += 100;
    id
}

#[tokio::test]
async fn keys_are_rendered_from_the_arguments_as_passed() {
    let m = manager();
    m.scope(async {
        args_user(1).await;
        assert_eq!(args_update(1).await, 101);
        args_user(1).await;
        assert_eq!(runs(&ARGS_RUNS), 2);
    })
    .await;
}

// --- sync functions, every kind at once -----------------------------------------------------

static SYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "sync", key = "sync:{id}", tags = ["t:{id}"])]
fn sync_user(id: i64) -> i64 {
    SYNC_RUNS.fetch_add(1, SeqCst);
    id
}

#[invalidates(cache = "sync", key = "sync:{id}")]
fn sync_by_key(id: i64) {
    let _ = id;
}

#[invalidates(tags = ["t:{id}"])]
fn sync_by_tag(id: i64) {
    let _ = id;
}

#[invalidates(cache = "sync", pattern = "sync:{id}*")]
fn sync_by_pattern(id: i64) {
    let _ = id;
}

#[invalidates(cache = "sync", all = true)]
fn sync_all() {}

#[invalidates(sync_user(id))]
fn sync_checked(id: i64) {
    let _ = id;
}

#[test]
fn sync_functions_invalidate_every_kind_of_target() {
    let m = manager();
    m.scope_sync(|| {
        let mut expected = 1;
        sync_user(-7);
        for invalidate in [sync_by_key, sync_by_tag, sync_by_pattern, sync_checked] {
            invalidate(-7);
            sync_user(-7);
            expected += 1;
            assert_eq!(runs(&SYNC_RUNS), expected);
            sync_user(-7);
            assert_eq!(runs(&SYNC_RUNS), expected, "cached again");
        }
        sync_all();
        sync_user(-7);
        assert_eq!(runs(&SYNC_RUNS), expected + 1);
    });
}

// --- single flight across tag invalidations -------------------------------------------------

static FLIGHT_RUNS: AtomicUsize = AtomicUsize::new(0);
static FLIGHT_GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

#[cached(cache = "flight", key = "user:{id}", tags = ["user:{id}"])]
async fn flight_user(id: u64) -> usize {
    let _ = id;
    let run = FLIGHT_RUNS.fetch_add(1, SeqCst) + 1;
    let _ = FLIGHT_GATE.acquire().await.unwrap();
    run
}

#[invalidates(tags = ["user:{id}"])]
async fn flight_update(id: u64) {
    let _ = id;
}

/// A caller that arrives while the body of user 1 runs joins it when only another user's tag was
/// invalidated meanwhile, and leads a new flight when user 1's own tag was: the value begun
/// before that invalidation is not handed to a caller that started after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flight_is_joined_across_other_tags_invalidations_but_not_its_own() {
    let m = manager();
    let coalesced = |m: &CacheManager| m.cache("flight").stats().coalesced;
    let spawn = |m: &CacheManager| {
        let m = m.clone();
        tokio::spawn(async move { m.scope(flight_user(1)).await })
    };
    let started = |n| async move {
        while runs(&FLIGHT_RUNS) < n {
            tokio::task::yield_now().await;
        }
    };

    let first = spawn(&m);
    started(1).await;
    m.scope(flight_update(2)).await;
    let second = spawn(&m);
    while coalesced(&m) == 0 && runs(&FLIGHT_RUNS) < 2 {
        tokio::task::yield_now().await;
    }
    FLIGHT_GATE.add_permits(2);
    assert_eq!((first.await.unwrap(), second.await.unwrap()), (1, 1));
    assert_eq!(
        runs(&FLIGHT_RUNS),
        1,
        "user 2's invalidation left user 1's flight joinable"
    );

    m.scope(flight_update(1)).await;
    let third = spawn(&m);
    started(2).await;
    m.scope(flight_update(1)).await;
    let fourth = spawn(&m);
    started(3).await;
    FLIGHT_GATE.add_permits(2);
    assert_eq!((third.await.unwrap(), fourth.await.unwrap()), (2, 3));
    assert_eq!(coalesced(&m), 1, "only the first pair shared a flight");
}
