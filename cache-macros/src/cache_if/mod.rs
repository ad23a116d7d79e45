//! `#[cache_if]`: a condition on a `#[cached]` function. The caching itself is `#[cached]`'s, so
//! this attribute only finds its way to it:
//!
//! - written below `#[cached]`, it is still on the function when `#[cached]` expands, which takes
//!   it off and parses it (`cached/mod.rs`); this macro never runs;
//! - written above `#[cached]`, it expands first and rewrites `#[cached(...)]` into
//!   `#[cached(..., __cache_if = (<its arguments>))]`, which `#[cached]` parses the same way.
//!
//! Either way `parse::parse_condition` reads it, with the user's spans.

pub(crate) mod parse;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{Attribute, Ident, ItemFn, Meta};

use crate::attrs;
use crate::cached::CACHE_IF_OPTION;

/// The arguments of the `#[cache_if]` that `#[cached]` writes after taking one off the function
/// (see `cached/expand.rs`): it expands to nothing.
pub(crate) const CONSUMED_MARKER: &str = "__cache_if_consumed";

pub(crate) fn cache_if(args: TokenStream, item: TokenStream) -> TokenStream {
    if syn::parse2::<Ident>(args.clone()).is_ok_and(|i| i == CONSUMED_MARKER) {
        return TokenStream::new();
    }
    let Ok(mut func) = syn::parse2::<ItemFn>(item.clone()) else {
        let error = syn::Error::new(
            crate::cached::first_token_after_attributes(&item),
            "`#[cache_if]` can only be applied to functions, together with `#[cached]`",
        );
        return with_error(item, error);
    };
    let Some(index) = attrs::position(&func.attrs, "cached") else {
        let error = syn::Error::new(
            Span::call_site(),
            format!(
                "`#[cache_if]` needs `#[cached]` on the same function: it decides when `{}` is cached; add `#[cached]`, or remove `#[cache_if]`",
                func.sig.ident
            ),
        );
        return with_error(func.into_token_stream(), error);
    };
    hand_over(&mut func.attrs[index], args);
    func.into_token_stream()
}

/// `#[cached]` → `#[cached(__cache_if = (args))]`, `#[cached(a, b)]` → `#[cached(a, b,
/// __cache_if = (args))]`. The option's name is spanned on this attribute, so that `#[cached]`
/// reports a second `#[cache_if]` here.
fn hand_over(cached: &mut Attribute, args: TokenStream) {
    let option = Ident::new(CACHE_IF_OPTION, Span::call_site());
    let handed = quote! { #option = (#args) };
    match &mut cached.meta {
        Meta::Path(path) => {
            let path = path.clone();
            cached.meta = syn::parse_quote! { #path(#handed) };
        }
        Meta::List(list) => {
            let existing = std::mem::take(&mut list.tokens);
            let needs_comma = existing.clone().into_iter().last().is_some_and(
                |tt| !matches!(&tt, proc_macro2::TokenTree::Punct(p) if p.as_char() == ','),
            );
            list.tokens = if needs_comma {
                quote! { #existing, #handed }
            } else {
                quote! { #existing #handed }
            };
        }
        // `#[cached = ...]` is not `#[cached]`'s syntax; it reports that itself.
        Meta::NameValue(_) => {}
    }
}

fn with_error(mut item: TokenStream, error: syn::Error) -> TokenStream {
    item.extend(error.into_compile_error());
    item
}
