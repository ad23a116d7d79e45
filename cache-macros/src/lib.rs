//! Procedural macros of cache-core. Depend on `cache-core`, which re-exports them.

mod attrs;
mod cache_if;
mod cached;
mod codegen;
mod errors;
mod invalidates;
mod key_template;
mod options;
mod signature;

use proc_macro::TokenStream;

// The examples of the guides on these macros are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/invalidation.md")]
mod invalidation_md {}

#[cfg(doctest)]
#[doc = include_str!("../../docs/conditions.md")]
mod conditions_md {}

/// Caches a function's results.
///
/// ```
/// use cache_core::cached;
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct User { id: u64, name: String }
///
/// #[cached(ttl = "30m", cache = "users", key = "user:{id}")]
/// async fn get_user(id: u64) -> Result<User, String> {
///     Ok(User { id, name: format!("user {id}") }) // a database query in real life
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(get_user(7).await, get_user(7).await); // the second call is a hit
/// # });
/// ```
///
/// A call renders the key from the arguments and looks it up in the named cache of the current
/// [`CacheManager`](../cache_core/struct.CacheManager.html). On a hit the body does not run; on a
/// miss it runs once, however many callers miss the same key at the same time (they wait for the
/// first and share its value), and its value is stored for the TTL. Works on `fn` and `async fn`,
/// free functions and methods (`&self` too); the signature is left exactly as written.
///
/// # What is cached
///
/// - `Result<T, E>` (or an alias of it): only `Ok(T)`; an `Err` is returned and not stored, so
///   the next call runs the body again.
/// - `Option<T>`: only `Some(T)`, unless `cache_none = true`.
/// - Any other type: the whole value.
///
/// The cached part must be `Clone + Send + Sync + 'static` (a hit clones it out of the cache). The
/// choice is made by the compiler from the real type, not from how the return type is spelled.
/// In a generic function that type is the one declared: a bare type parameter (`-> T`) is cached
/// whole even when a caller picks `T = Result<_, _>`; declare `-> Result<T, E>` to cache only `Ok`.
///
/// # Options
///
/// All options are optional: `#[cached]` alone caches in the `"default"` cache under the default
/// key with the cache policy's TTL.
///
/// ## `ttl`
///
/// How long an entry lives: whole seconds (`ttl = 1800`) or a duration string made of numbers
/// with units `ms`, `s`, `m`, `h`, `d` (`ttl = "30m"`, `ttl = "1h30m"`, `ttl = "500ms"`). Must be
/// greater than zero. Without it, the cache's [`Policy`](../cache_core/struct.Policy.html) decides.
///
/// ## `key`
///
/// A template, `key = "user:{id}"`, whose placeholders name arguments:
///
/// - `{id}`: the argument's `Display` output, escaped so that no two values share a key;
/// - `{user.org.id}`: a field of an argument (`{self.id}` in a method); a name that is a keyword
///   may leave out its `r#` (`{item.type}` for the field `r#type`);
/// - `{email:hash}`: a stable 64-bit hash of the value instead of the value (16 hex digits), for
///   personal data; `{name:lower}` and `{name:upper}` change the case;
/// - `{{` and `}}`: literal braces.
///
/// A placeholder that names no argument is a compile error, as is an unknown formatter.
///
/// Any other expression, `key = format!("{a}-{b}")` or `key = id`, is used whole: its `Display`
/// output, not escaped, is the key.
///
/// ```
/// # use cache_core::cached;
/// #[cached(key = "org:{org}:member:{email:hash}")]
/// fn is_member(org: u32, email: &str) -> bool {
///     email.ends_with("@example.com") && org == 1
/// }
/// # assert!(is_member(1, "ada@example.com"));
/// ```
///
/// ## The default key
///
/// Without `key`, the key is the function's path, its type arguments, and a 128-bit hash of its
/// arguments serialized with `serde` (so they must implement `serde::Serialize`):
/// `my_app::users::get_user:4f1e...` or, for `fn size<T>()`, `my_app::size::<u32>`. Methods that
/// name `Self` add its type (`::<Self=my_app::Repo>`); `self` itself and `_` arguments are never
/// part of the key, nor is an argument that its `#[cfg(..)]` configures out, and `skip(...)`
/// leaves out more.
///
/// The path of a function of a module is `module_path!()` and its name. A function in an `impl`
/// or a trait, or inside another function, has the path of that scope instead, as the compiler
/// spells it (`my_app::Repo::get`, `<my_app::Db as my_app::Loader>::load`,
/// `my_app::handler::inner`), so that methods of the same name from different impls, and local
/// functions of the same name in different functions, never share entries. A function of a
/// generic `impl`, or a trait's provided method, may read `T`, the trait's type arguments or
/// `Self` in its body whatever its signature shows: its path is its instance's
/// (`my_app::Repo<u8>::size`, `<my_app::Ada as my_app::Named>::greeting`). That spelling comes
/// from `std::any::type_name`, as the `Self=` part always did, and may change with the compiler.
///
/// The hash tells `None`, `Some(None)` and `Some(())` apart, and a map's entries are hashed in
/// the order of their bytes, so equal `HashMap`s share a key. A `HashSet` argument is a compile
/// error: hashed as the sequence it iterates, in an order of its own in every process, equal sets
/// would not share a key; take a `BTreeSet`, give a `key`, or `skip` it.
///
/// On axum handlers (see docs/axum.md): names bound by extractor patterns (`Path(id)`,
/// `Query(q)`, `Json(body)`) are arguments like any other; a `State<S>` argument (with its type
/// argument, bare or through axum's path) is never part of the key; and an argument of a per-user
/// extractor type (`HeaderMap`, `TypedHeader`, `CookieJar`, `SignedCookieJar`,
/// `PrivateCookieJar`, `Cookies`, `Extension`, `Request`, `Parts`; also inside `Option<..>` or
/// `Result<.., _>`, axum's optional extraction) is a compile error unless it is
/// in `skip(...)` or the key is explicit: the default key could not tell users apart, and one
/// user's response would be served to the others. A type of your own that shares one of these
/// names is an ordinary argument when named through a path of yours (`crate::api::Request`,
/// `self::State`) or under another name.
///
/// ## `cache`
///
/// The named cache, `cache = "users"`, whose policy (TTL, bounds) applies. Default `"default"`.
///
/// ## `tags`
///
/// Tags stored with each entry, `tags = ["user:{id}", "users"]`, templates with the same
/// placeholders as `key`. Invalidate every entry carrying a tag with
/// [`Cache::invalidate_tag`](../cache_core/struct.Cache.html#method.invalidate_tag).
///
/// ## `skip`
///
/// Arguments left out of the default key, `skip(conn, request_id)`: connections, handles, and
/// anything else that does not change the result. Naming something that is not an argument is an
/// error, and so is `skip` with `key` (a key template names exactly what it uses).
///
/// ```
/// # use cache_core::cached;
/// # struct Pool;
/// #[cached(skip(pool))]
/// fn price(pool: &Pool, product: u32) -> u64 {
///     # let _ = pool;
///     u64::from(product) * 100
/// }
/// # assert_eq!(price(&Pool, 3), 300);
/// ```
///
/// ## `cache_none`
///
/// `cache_none = true` on a function returning `Option<T>` stores `None` too, so "not found" is
/// remembered for the TTL instead of looked up again. Only for `Option` return types.
///
/// ## Freshness: `stale`, `fail_safe`, `timeout`, `soft_timeout`, `refresh_ahead`, `jitter`
///
/// What happens around the TTL (durations as for `ttl`; each overrides the cache policy's
/// setting; see docs/freshness.md for a timeline of each):
///
/// - `stale = 600`: stale-while-revalidate. For 600 s past its TTL an entry is returned at once
///   while one background task refreshes it.
/// - `fail_safe = "1h"`: for an hour past its TTL the entry is kept, and when the body fails (an
///   `Err`, a panic, or the hard timeout) the caller gets that value instead of the failure. It
///   is then served as fresh for the policy's fail-safe throttle (30 s by default) so a failing
///   database is not asked on every call. Failures are counted (`CacheStats::fail_safe`,
///   `body_failures`) and logged.
/// - `soft_timeout = "100ms"`: past it, a caller that has a stale or fail-safe value gets it and
///   the body finishes in the background, storing its value. Async functions only.
/// - `timeout = "2s"`: the hard timeout. Past it the caller gets its fail-safe value or, without
///   one, `Err(E::from(TimedOut))`: the function must return `Result<T, E>` with
///   `E: From<cache_core::TimedOut>`. Async functions only; the body is dropped.
/// - `refresh_ahead`: entries read near the end of their TTL are refreshed in the background
///   before they expire, by XFetch (probability `exp(-t / (β·δ))` at remaining time `t`, where
///   `δ` is the measured time the value took to compute: no window to tune), or after a fixed
///   fraction of the TTL with `refresh_ahead = 0.8`.
/// - `jitter = 10`: each entry's TTL is shortened by a random 0-10%, so entries written together
///   do not expire together.
///
/// `stale`, `soft_timeout` and `refresh_ahead` run the body after the call returns, so its
/// arguments must be owned (`String`, `Arc<T>`, `self: Arc<Self>`; a reference is a compile error
/// at the argument) and it must be `Send`. Every mode keeps single flight: one body run per key
/// at a time, whoever waits.
///
/// ```
/// use std::sync::Arc;
/// use cache_core::{TimedOut, cached};
///
/// #[derive(Debug, Clone)]
/// enum DbError { Timeout, Down }
/// impl From<TimedOut> for DbError {
///     fn from(_: TimedOut) -> Self { DbError::Timeout }
/// }
///
/// #[cached(key = "product:{id}", ttl = 60, stale = 600, fail_safe = "1h", soft_timeout = "100ms", timeout = "2s", jitter = 10)]
/// async fn product(id: u64, db: Arc<String>) -> Result<String, DbError> {
///     # let _ = DbError::Down;
///     Ok(format!("{db}: product {id}"))
/// }
///
/// #[cached(ttl = 300, refresh_ahead)]
/// async fn exchange_rates(base: String) -> Vec<(String, f64)> {
///     vec![(base, 1.0)]
/// }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// # assert!(product(1, Arc::new("db".into())).await.is_ok());
/// # assert_eq!(exchange_rates("EUR".into()).await.len(), 1);
/// # });
/// ```
///
/// ## `crate`
///
/// The path to `cache_core` when it is not reachable as `::cache_core` (re-exported by another
/// crate, or renamed): `crate = "my_framework::cache_core"`.
///
/// # Conditions: `#[cache_if]`
///
/// A [`#[cache_if(...)]`](macro@cache_if) beside `#[cached]`, above or below it, decides when the
/// cache is used: a condition over the arguments checked before the lookup, and/or
/// `result = <predicate>` asked before a value is stored.
///
/// # Invalidation: the key companion
///
/// Next to the function, `#[cached]` writes a hidden function, `__cache_key_<name>`, with the
/// same parameters taken by reference, that renders the key a call with those arguments would
/// use (with the same code, so the two cannot drift apart). It is what
/// [`#[invalidates(get_user(id))]`](macro@invalidates) calls. It has the function's visibility,
/// so a `pub` function can be invalidated from other modules and crates.
///
/// In an `impl` block an extra item is only sure to be allowed in an inherent `impl`, and an
/// attribute cannot tell that from `impl Trait for Type`; so a method (a function that takes
/// `self` or names `Self`) gets its companion only when it has a visibility: `pub`,
/// `pub(crate)`, or `pub(self)` for a private one.
///
/// # Equivalent code
///
/// ```text
/// #[cached(ttl = 60, key = "user:{id}", tags = ["users"])]
/// async fn get_user(id: u64) -> Result<User, Error> { BODY }
/// ```
///
/// becomes, with the signature unchanged (paths shortened; the real ones go through
/// `::cache_core::__private`):
///
/// ```text
/// async fn get_user(id: u64) -> Result<User, Error> {
///     static SITE: CallSite = CallSite::new("default", 60_000);
///     let mut k = KeyBuf::new();          // on the stack, rendered in place
///     k.lit("user:");
///     k.part_or_int(&id, /* integer fast path, found at compile time */);
///     let tags = [{ let mut t = KeyBuf::new(); t.lit("users"); t }];
///     // serde codec if `User` is Serialize + Deserialize (for a remote tier), else None:
///     let codec = (&&ValueOf::<Result<User, Error>>::new().probe()).codec();
///     // `Result` caches `Ok`, `Option` caches `Some`, anything else the whole value:
///     let strategy = WithCodec::new(Probe::<Result<User, Error>>::new().strategy(), codec);
///     let call = cached_async(&SITE, &k, &tags, job(strategy, async move { BODY }));
///     let later = {
///         let guard = Guard::new();          // the memory tier's epoch, not held across awaits
///         match call.lookup(&guard) {
///             Ok(value) => return call.rebuild(value),  // cloned into the return value
///             Err(later) => later,
///         }
///     };
///     call.miss(later).await                 // single flight, remote tier, BODY
/// }
/// ```
///
/// A sync function passes `sync_job(strategy, move || -> Result<User, Error> { BODY })` to
/// `cached_sync` instead. The body keeps its meaning: `return` and `?` return from it as before.
/// With `stale`, `soft_timeout` or `refresh_ahead` the job is a `detachable_job`, which checks
/// that the body is `Send + 'static`; freshness options chain onto the call site
/// (`CallSite::new(..).stale(600_000)`).
///
/// # Errors
///
/// Mistakes are reported at the option or the type they concern, all in one build, and the
/// function is still emitted as written, so its callers keep compiling. A return type that
/// cannot be cached, a default-key argument without `Serialize`, or a placeholder without
/// `Display` are reported by the compiler at that return type, argument or template.
///
/// # Limitations
///
/// A cached value outlives the call, so the function must return an owned, named type: not a
/// reference, not a type that borrows, and not `impl Trait` (return `Json<T>`, `String`,
/// `Result<T, E>`... instead of `impl IntoResponse`).
///
/// ```compile_fail
/// # use cache_core::cached;
/// #[cached]
/// fn name(id: &str) -> &str { id }
/// ```
///
/// ```compile_fail
/// # use cache_core::cached;
/// #[cached]
/// async fn handler(id: u64) -> impl std::fmt::Display { id }
/// ```
///
/// A function that returns a future (`impl Future`, or the `Pin<Box<dyn Future>>` that
/// `#[async_trait]` makes of an `async fn`) only makes it: the cache would hold the future, not
/// its output. Make it an `async fn`, or cache an `async fn` that it awaits.
///
/// ```compile_fail
/// # use cache_core::cached;
/// #[cached]
/// fn load(id: u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>> {
///     Box::pin(async move { id })
/// }
/// ```
///
/// A function that returns nothing has nothing to cache:
///
/// ```compile_fail
/// # use cache_core::cached;
/// #[cached]
/// async fn refresh(id: u64) { let _ = id; }
/// ```
///
/// The value must be `Clone + Send + Sync + 'static`; wrap a value that is not `Clone` in an
/// `Arc`:
///
/// ```compile_fail,E0277
/// # use cache_core::cached;
/// struct Report(Vec<u8>);
///
/// #[cached]
/// fn report(id: u64) -> Report { Report(vec![id as u8]) }
/// ```
///
/// Default-key arguments must implement `serde::Serialize`; `skip` the others, or write a `key`:
///
/// ```compile_fail,E0277
/// # use cache_core::cached;
/// struct Connection;
///
/// #[cached]
/// fn load(conn: &Connection, id: u64) -> u64 { id }
/// ```
///
/// A cache is read at run time, so `const fn` cannot be cached; nor can `extern` functions:
///
/// ```compile_fail
/// # use cache_core::cached;
/// #[cached]
/// const fn double(x: u32) -> u32 { x * 2 }
/// ```
///
/// An associated function without `self` that does not mention `Self` looks like a free function
/// to the attribute: in `impl Trait for Type` it gets a key companion, which a trait impl does
/// not accept (``method `__cache_key_load` is not a member of trait``): cache a free function and
/// call it from the trait method instead.
///
/// ```compile_fail,E0407
/// # use cache_core::cached;
/// trait Loader { fn load(id: u64) -> String; }
/// struct Db;
/// impl Loader for Db {
///     #[cached]
///     fn load(id: u64) -> String { id.to_string() }
/// }
/// ```
///
/// Tasks spawned from a cached body do not inherit a test's
/// [`CacheManager::scope`](../cache_core/struct.CacheManager.html#method.scope).
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    cached::cached(args.into(), item.into()).into()
}

/// Decides when a [`#[cached]`](macro@cached) function uses its cache.
///
/// ```
/// use cache_core::{cache_if, cached};
///
/// #[cached(key = "search:{query}")]
/// #[cache_if(!query.is_empty(), result = |hits: &Vec<String>| !hits.is_empty())]
/// fn search(query: &str) -> Vec<String> {
///     // an expensive search in real life
///     ["rust", "redis"].iter().filter(|w| w.starts_with(query)).map(|w| w.to_string()).collect()
/// }
/// # assert_eq!(search("ru"), ["rust"]); // cached
/// # assert!(search("").len() == 2);     // never looked up, never stored
/// # assert!(search("x").is_empty());    // run and returned, not stored
/// ```
///
/// Both forms are optional; give one or both, in one `#[cache_if]`.
///
/// # The condition
///
/// `#[cache_if(EXPR)]`: a `bool` expression over the arguments (`self` too, in a method),
/// evaluated before anything else. When it is `false` the cache is bypassed entirely: no lookup,
/// nothing stored, no single flight; the body runs as if the function were not cached. Each
/// bypass is counted in the cache's [`CacheStats::bypassed`](../cache_core/struct.CacheStats.html#structfield.bypassed).
///
/// The expression reads the arguments before the body does; it should borrow them
/// (`name.is_empty()`), not consume them.
///
/// # `result = <predicate>`
///
/// `#[cache_if(result = |value| ...)]`: asked after the body, with a reference to the whole
/// return value (`&R`), whether to store it. The value is returned either way. Any `Fn(&R) ->
/// bool` will do: a closure, or a path such as `result = Option::is_some`. For a `Result`, only
/// an `Ok` that the predicate accepts is stored (an `Err` never is); for an `Option`, only a
/// `Some` (unless `cache_none = true`).
///
/// ```
/// # use cache_core::{cache_if, cached};
/// #[cached]
/// #[cache_if(result = |r: &Result<u32, String>| r.as_ref().is_ok_and(|n| *n > 0))]
/// fn stock(item: u32) -> Result<u32, String> {
///     Ok(item % 3) // an out-of-stock answer (0) is asked again next time
/// }
/// # assert_eq!(stock(3), Ok(0));
/// ```
///
/// # Either order
///
/// `#[cache_if]` may be written above or below `#[cached]` (also as `cache_core::cache_if`, next
/// to `#[cached]`, `#[cache_core::cached]` or `#[::cache_core::cached]`): below, `#[cached]`
/// takes it off the function; above, it hands its arguments to the `#[cached]` below it.
///
/// # Equivalent code
///
/// ```text
/// #[cached(key = "user:{id}")]
/// #[cache_if(id > 0, result = |u: &User| u.active)]
/// async fn get_user(id: i64) -> User { BODY }
/// ```
///
/// becomes, with the signature unchanged (as in `#[cached]`'s equivalent code, paths shortened):
///
/// ```text
/// async fn get_user(id: i64) -> User {
///     static SITE: CallSite = CallSite::new("default", 0);
///     let use_cache = if id > 0 { true } else { false };
///     let mut k = KeyBuf::new(); /* render "user:{id}" */
///     let strategy = store_if::<User, _, _>(Probe::<User>::new().strategy(),
///                                          move |v: &User| keep(|u: &User| u.active, v));
///     let body = async move { BODY };      // built once
///     if use_cache {
///         /* as above: cached_async(&SITE, &k, &[], job(strategy, body)), lookup, miss */
///     } else {
///         bypass(&SITE);                   // counted in the stats
///         body.await
///     }
/// }
/// ```
///
/// # Errors
///
/// `#[cache_if]` without `#[cached]` on the same function, a second `#[cache_if]`, an unknown
/// option or an empty `#[cache_if]` are reported at the attribute. A name that is not an
/// argument is reported by the compiler at that name, a condition that is not a `bool` at the
/// condition, and a predicate of the wrong type at the predicate.
///
/// # Limitations
///
/// It only adds a condition to `#[cached]`; alone it is an error:
///
/// ```compile_fail
/// # use cache_core::cache_if;
/// #[cache_if(id > 0)]
/// fn get_user(id: u64) -> u64 { id }
/// ```
///
/// The condition is a `bool`, not a value that converts to one:
///
/// ```compile_fail,E0308
/// # use cache_core::{cache_if, cached};
/// #[cached]
/// #[cache_if(name.len())]
/// fn greet(name: &str) -> String { format!("hello {name}") }
/// ```
///
/// The predicate is built before the body takes the arguments, so it should not capture them;
/// it sees the return value only.
#[proc_macro_attribute]
pub fn cache_if(args: TokenStream, item: TokenStream) -> TokenStream {
    cache_if::cache_if(args.into(), item.into()).into()
}

/// Removes cache entries when a function that changes their data succeeds.
///
/// ```
/// use cache_core::{cached, invalidates};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct User { id: u64, name: String }
///
/// #[cached(cache = "users", key = "user:{id}")]
/// async fn get_user(id: u64) -> Result<User, String> {
///     Ok(User { id, name: format!("user {id}") }) // a database query in real life
/// }
///
/// #[invalidates(get_user(id))]
/// async fn rename(id: u64, name: &str) -> Result<(), String> {
///     let _ = name; // an UPDATE in real life
///     Ok(())
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// get_user(7).await?;
/// rename(7, "Ada").await?;   // Ok: user:7 is removed
/// get_user(7).await?;        // a miss: loaded again
/// # Ok::<(), String>(())
/// # }).unwrap();
/// ```
///
/// Works on `fn` and `async fn`, free functions and methods; the signature is left exactly as
/// written, and the future of an `async fn` is `Send` whenever it was.
///
/// # When
///
/// Keys, patterns and tags are rendered first, from the arguments as they were passed (the body
/// may move or change them). Then the body runs, and if it succeeded the entries are removed
/// before the function returns: for a `Result` (or an alias of it) on `Ok` only, for any other
/// return type always. An `Err` leaves the cache as it was. The compiler decides what is a
/// `Result`, as `#[cached]` does, not the spelling of the type.
///
/// In an `async fn` the removal is awaited (a remote tier included); in a sync `fn` it blocks
/// until done.
///
/// # What to remove
///
/// Any combination, in one attribute.
///
/// ## A `#[cached]` function and its arguments
///
/// `#[invalidates(get_user(id))]` removes the entry that `get_user(id)` would read: the key is
/// rendered by `get_user`'s own key derivation (its key template, or its default key), through
/// the companion that `#[cached]` writes (see [`#[cached]`](macro@cached)), and removed from
/// `get_user`'s cache. The arguments are expressions over this function's arguments, written as
/// in a call of `get_user`; they are borrowed, and the compiler checks their types. Several
/// functions may be named, and paths, type arguments and methods are allowed:
///
/// ```
/// # use cache_core::{cached, invalidates};
/// mod users {
///     # use cache_core::cached;
///     #[cached(cache = "profiles", key = "profile:{id}")]
///     pub fn profile(id: u64) -> String { format!("profile {id}") }
/// }
///
/// #[cached] // the default key: the function's path and a hash of the arguments
/// fn permissions(id: u64, org: &str) -> Vec<String> { vec![format!("{org}:{id}")] }
///
/// struct Repo { org: String }
///
/// impl Repo {
///     #[cached(key = "repo:{self.org}:{id}")]
///     pub(crate) fn get(&self, id: u64) -> u64 { id }
///
///     #[invalidates(users::profile(id), permissions(id, &self.org), Self::get(self, id))]
///     fn remove_member(&self, id: u64) -> Result<(), String> { Ok(()) }
/// }
/// # Repo { org: "x".into() }.remove_member(1).unwrap();
/// ```
///
/// A name that is not a `#[cached]` function is an error at that name ("cannot find function
/// `__cache_key_get_usr`": no key companion, so not a cached function, or not in scope). A
/// method's companion exists only if the method has a visibility (`pub(self)` for a private
/// one); see [`#[cached]`](macro@cached). A function whose key is an expression
/// (`key = format!(..)`) cannot be named: give it a template, or use `key = ...` here.
///
/// ## `key` and `keys`
///
/// One key, `key = "user:{id}"`, or several, `keys = ["user:{id}", "profile:{id}"]`, removed
/// from the cache named by `cache`. Templates are rendered exactly as `#[cached]` renders them
/// (the same placeholders, fields and formatters, the same escaping), so `key = "user:{id}"`
/// names the entry of `#[cached(key = "user:{id}")]` with the same `id`. An expression,
/// `key = format!("user-{id}")`, is used whole, as in `#[cached]`.
///
/// ## `cache`
///
/// The named cache of `key`, `keys`, `pattern`, `patterns` and `all`: `cache = "users"`.
/// Default `"default"`. (Tags apply to every cache; a named function knows its own cache.)
///
/// ## `tags`
///
/// `tags = ["user:{id}"]` removes, from every cache, every entry stored with one of these tags
/// (`#[cached(tags = [..])]`), in time proportional to those entries.
///
/// ## `pattern` and `patterns`
///
/// `pattern = "search:{user}:*"` removes the keys of the named cache that match a glob (`*`,
/// `?`, `[..]`, `\` escapes); `patterns = [..]` gives several. The literal parts are glob syntax
/// as written. The argument values are escaped twice, as in a key and then for the glob, so they
/// match only themselves: a user id of `*` removes that user's entries, not everyone's.
///
/// ```
/// # use cache_core::{cached, invalidates};
/// #[cached(cache = "search", key = "search:{user}:{query}")]
/// fn search(user: &str, query: &str) -> Vec<String> { vec![format!("{user}/{query}")] }
///
/// #[invalidates(cache = "search", pattern = "search:{user}:*")]
/// fn forget_searches(user: &str) {}
/// # search("*", "a"); search("ada", "b");
/// # forget_searches("*");
/// # assert_eq!(cache_core::cache("search").len(), 1);
/// ```
///
/// ## `all`
///
/// `cache = "catalog", all = true` empties that cache. (To empty every cache, call
/// `cache_core::invalidate_all()`.)
///
/// ## `before`
///
/// `before = true` removes the entries before the body runs, whatever it returns (Spring's
/// `beforeInvocation`): for bodies whose failure may still have changed the data.
///
/// ## `crate`
///
/// The path to `cache_core` when it is not reachable as `::cache_core`, as in `#[cached]`.
///
/// # Equivalent code
///
/// ```text
/// #[invalidates(get_user(id), tags = ["user:{id}"])]
/// async fn rename(id: u64, name: String) -> Result<User, Error> { BODY }
/// ```
///
/// becomes, with the signature unchanged (paths shortened):
///
/// ```text
/// async fn rename(id: u64, name: String) -> Result<User, Error> {
///     let inv_0 = companion_key(__cache_key_get_user(&(id)));    // ("users", "user:7")
///     let inv_1 = { let mut t = KeyBuf::new(); t.lit("user:"); t.part_or_int(&id, ..); t };
///     let (probe, out) = OnSuccess::with(async move { BODY }.await);
///     let split = probe.split();              // `Result`: Ok/Err; anything else: whole
///     let kept = match split.kept(out) {
///         Ok(value) => value,                 // only the `Ok` value is held below
///         Err(failed) => return failed,       // an `Err`: nothing is removed
///     };
///     invalidate_key(inv_0.0, &inv_0.1).await;
///     invalidate_tag(&inv_1).await;
///     split.rebuild(kept)
/// }
/// ```
///
/// With `before = true`, the invalidations come first and the body follows as it is. A sync
/// function runs its body in a closure and calls the `_blocking` twins. `return` and `?` keep
/// their meaning.
///
/// # Errors
///
/// Mistakes are reported at the option, template or argument they concern, all in one build,
/// and the function is still emitted as written.
///
/// # Limitations
///
/// It cannot share a function with `#[cached]`: on a hit the body does not run, so its
/// invalidations would not either.
///
/// ```compile_fail
/// # use cache_core::{cached, invalidates};
/// #[cached]
/// #[invalidates(key = "all-users")]
/// fn load(id: u64) -> u64 { id }
/// ```
///
/// `all = true` needs the cache to empty:
///
/// ```compile_fail
/// # use cache_core::invalidates;
/// #[invalidates(all = true)]
/// fn reset() {}
/// ```
///
/// A named function must be `#[cached]`:
///
/// ```compile_fail,E0425
/// # use cache_core::invalidates;
/// fn get_user(id: u64) -> u64 { id }
///
/// #[invalidates(get_user(id))]
/// fn rename(id: u64) {}
/// ```
///
/// and its key derivable from the arguments: a `key = <expression>` is not.
///
/// ```compile_fail,E0277
/// # use cache_core::{cached, invalidates};
/// #[cached(key = format!("user-{id}"))]
/// fn get_user(id: u64) -> u64 { id }
///
/// #[invalidates(get_user(id))]
/// fn rename(id: u64) {}
/// ```
///
/// A function that returns a future (`impl Future`, `Pin<Box<dyn Future>>`, which is what
/// `#[async_trait]` makes of an `async fn`) only makes it, and the work runs when it is awaited:
/// removing the entries when it returns would be too early, and blind to an `Err`. It is an
/// error; make it an `async fn`, or have it await one that is `#[invalidates]`.
///
/// ```compile_fail
/// # use cache_core::invalidates;
/// #[invalidates(key = "user:{id}")]
/// fn save(id: u64) -> impl std::future::Future<Output = Result<(), String>> {
///     async move { let _ = id; Ok(()) }
/// }
/// ```
///
/// A function that never returns (`-> !`) never succeeds, so nothing would be removed after it:
/// it needs `before = true`.
///
/// ```compile_fail
/// # use cache_core::invalidates;
/// #[invalidates(key = "sessions")]
/// fn shutdown() -> ! { std::process::exit(0) }
/// ```
///
/// After the body, an `async fn` holds its successful value (the `Ok` value of a `Result`)
/// across the invalidation's `.await`: a `Result<Rc<T>, E>` makes the future `!Send` where it
/// was not. Errors are never held.
#[proc_macro_attribute]
pub fn invalidates(args: TokenStream, item: TokenStream) -> TokenStream {
    invalidates::invalidates(args.into(), item.into()).into()
}
