//! `#[cached]`: parse the options (`parse.rs`), check them and the function (`check.rs`), write
//! the cached function and its key companion (`expand.rs`, `companion.rs`). On any error the
//! function is emitted unchanged next to the errors, so its callers still compile and the IDE
//! keeps working.
//!
//! A `#[cache_if]` written below `#[cached]` is still on the function here: it is taken off and
//! checked with the options (see `cache_if/mod.rs` for the other order).

mod check;
mod companion;
mod expand;
mod parse;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ItemFn;

use crate::attrs;
use crate::errors::Errors;

pub(crate) use companion::companion_ident;
pub(crate) use parse::CACHE_IF_OPTION;

pub(crate) fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let errors = Errors::new();
    let mut args = parse::parse_args(args, &errors);
    let plan = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(mut func) => {
            take_stacked(&mut func, &mut args, &errors);
            let plan = check::check(args, &func, &errors);
            Some((plan, func))
        }
        Err(_) => {
            not_a_function(&item, &errors);
            None
        }
    };
    match (errors.finish(), plan) {
        (Ok(()), Some((Some(plan), func))) => expand::expand(&plan, func),
        (result, plan) => {
            // Without the `#[cache_if]` taken off above: left on, it would expand on its own and
            // report a missing `#[cached]` as well.
            let mut out = match plan {
                Some((_, func)) => func.into_token_stream(),
                None => item,
            };
            if let Err(e) = result {
                out.extend(e.into_compile_error());
            }
            out
        }
    }
}

/// Takes the `#[cache_if]` attributes off `func` into `args`; reports an `#[invalidates]` or a
/// second `#[cached]` on it.
fn take_stacked(func: &mut ItemFn, args: &mut parse::Args, errors: &Errors) {
    let mut kept = Vec::with_capacity(func.attrs.len());
    for attr in std::mem::take(&mut func.attrs) {
        if attrs::is_ours(attr.path(), "cache_if") {
            let tokens = match &attr.meta {
                syn::Meta::List(list) => list.tokens.clone(),
                _ => TokenStream::new(),
            };
            args.cache_if.push(parse::CacheIfTokens {
                span: attr
                    .path()
                    .segments
                    .last()
                    .map_or_else(Span::call_site, |s| s.ident.span()),
                tokens,
                path: Some(attr.path().clone()),
            });
        } else {
            if attrs::is_ours(attr.path(), "cached") {
                // Left on, it would cache the cached function again, under another key, and
                // write a second key companion of the same name.
                errors.spanned_by(
                    attr.path(),
                    format!(
                        "`#[cached]` is given twice on `{}`; keep one, with all the options",
                        func.sig.ident
                    ),
                );
            }
            if attrs::is_ours(attr.path(), "invalidates") {
                errors.spanned_by(
                    attr.path(),
                    format!(
                        "`#[invalidates]` cannot be on a `#[cached]` function: on a hit `{}` does not run, so neither would its invalidations; put `#[invalidates]` on the function that changes the data",
                        func.sig.ident
                    ),
                );
            }
            kept.push(attr);
        }
    }
    func.attrs = kept;
}

fn not_a_function(item: &TokenStream, errors: &Errors) {
    if let Ok(decl) = syn::parse2::<syn::TraitItemFn>(item.clone())
        && decl.default.is_none()
    {
        errors.spanned_by(
                &decl.sig,
                "`#[cached]` needs a function with a body; put it on the trait's implementations, or give the method a default body",
            );
        return;
    }
    errors.at(
        first_token_after_attributes(item),
        "`#[cached]` can only be applied to functions",
    );
}

/// The item's first token after its outer attributes (`pub`, `struct`, ...).
pub(crate) fn first_token_after_attributes(item: &TokenStream) -> Span {
    let mut tokens = item.clone().into_iter().peekable();
    while let Some(tt) = tokens.next() {
        match &tt {
            TokenTree::Punct(p) if p.as_char() == '#' => {
                // `#[...]`: skip the bracketed group too.
                if let Some(TokenTree::Group(_)) = tokens.peek() {
                    tokens.next();
                }
            }
            _ => return tt.span(),
        }
    }
    Span::call_site()
}
