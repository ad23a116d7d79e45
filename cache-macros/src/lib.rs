//! Procedural macros of cache-core. Depend on `cache-core`, which re-exports them.

mod cached;
mod errors;
mod key_template;
mod signature;

use proc_macro::TokenStream;

/// See `cache_core::cached`.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    cached::cached(args.into(), item.into()).into()
}
