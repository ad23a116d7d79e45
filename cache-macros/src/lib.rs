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
/// - `{user.org.id}`: a field of an argument (`{self.id}` in a method);
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
/// part of the key, and `skip(...)` leaves out more.
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
/// ## `crate`
///
/// The path to `cache_core` when it is not reachable as `::cache_core` (re-exported by another
/// crate, or renamed): `crate = "my_framework::cache_core"`.
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
///     cached_async(&SITE, &k, &tags, strategy, async move { BODY }).await
/// }
/// ```
///
/// A sync function passes `move || -> Result<User, Error> { BODY }` to `cached_sync` instead. The
/// body keeps its meaning: `return` and `?` return from it as before.
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
/// Associated functions without `self` that do not mention `Self` cannot tell which `impl` they
/// are in: two of them with the same name in one module share default keys. Give them a `key`.
///
/// Tasks spawned from a cached body do not inherit a test's
/// [`CacheManager::scope`](../cache_core/struct.CacheManager.html#method.scope).
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    cached::cached(args.into(), item.into()).into()
}

/// Decides when a `#[cached]` function uses its cache (manual to follow).
#[proc_macro_attribute]
pub fn cache_if(args: TokenStream, item: TokenStream) -> TokenStream {
    cache_if::cache_if(args.into(), item.into()).into()
}

/// Invalidates cache entries when a function succeeds (manual to follow).
#[proc_macro_attribute]
pub fn invalidates(args: TokenStream, item: TokenStream) -> TokenStream {
    invalidates::invalidates(args.into(), item.into()).into()
}
