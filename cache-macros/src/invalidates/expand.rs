//! Writes a checked [`Plan`] out as code. Nothing here validates.
//!
//! The signature stays token for token. The new block renders every key, pattern and tag from the
//! arguments first (they are moved into the body afterwards), then either invalidates and runs
//! the body as it is (`before = true`), or runs the body wrapped (`async move {}` / a closure, so
//! `return` and `?` keep their meaning) and invalidates when the value it returned is a success.
//! Only rendered keys (`KeyBuf`, `Send + Sync`) are held across the body.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::{AttrStyle, Expr, ItemFn, Path, ReturnType, Type};

use super::check::Plan;
use super::parse::{CachedCall, Callee, KeySpec, Target};
use crate::cached::companion_ident;
use crate::codegen::{
    Access, erase_impl_trait, fake_return, first_last, group, local, render_pattern,
    render_template, respan, template_checks,
};

pub(crate) fn expand(plan: &Plan, item: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;
    let (inner_attrs, outer_attrs): (Vec<_>, Vec<_>) = attrs
        .into_iter()
        .partition(|a| matches!(a.style, AttrStyle::Inner(_)));
    let import = plan.krate.import();
    let c = &plan.krate.in_body();
    let is_async = sig.asyncness.is_some();

    // The expansion's locals, hygienic (see `local`).
    let local_k = local("__k");
    let local_t = local("__t");
    let local_p = local("__p");
    let local_probe = local("__cache_probe");
    let local_out = local("__cache_out");
    let local_split = local("__cache_split");
    let local_kept = local("__cache_kept");
    let local_failed = local("__cache_failed");

    // Rendered before the body, from the arguments as passed.
    let mut prepare = TokenStream::new();
    let mut invalidate = TokenStream::new();
    let blocking = |name: &str| {
        if is_async {
            format_ident!("{}", name)
        } else {
            format_ident!("{}_blocking", name)
        }
    };
    let awaited = |call: TokenStream| {
        if is_async {
            quote! { #call.await; }
        } else {
            quote! { #call; }
        }
    };
    let cache = &plan.cache;
    for (i, target) in plan.targets.iter().enumerate() {
        let var = local(&format!("__cache_inv_{i}"));
        match target {
            Target::Key(key) => {
                let render = match key {
                    KeySpec::Template(t) => {
                        prepare.extend(template_checks(c, t, &Access::Owned));
                        render_template(c, t, &quote!(#local_k), &Access::Owned)
                    }
                    KeySpec::Expr(expr) => quote! { #local_k.whole(&(#expr)); },
                };
                prepare.extend(rendered(c, &var, &quote!(#local_k), render));
                let f = blocking("invalidate_key");
                invalidate.extend(awaited(quote! { #c::__private::#f(#cache, &#var) }));
            }
            Target::Pattern(t) => {
                prepare.extend(template_checks(c, t, &Access::Owned));
                let render = render_pattern(c, t, &quote!(#local_p));
                prepare.extend(rendered(c, &var, &quote!(#local_p), render));
                let f = blocking("invalidate_pattern");
                invalidate.extend(awaited(quote! { #c::__private::#f(#cache, &#var) }));
            }
            Target::Tag(t) => {
                prepare.extend(template_checks(c, t, &Access::Owned));
                let render = render_template(c, t, &quote!(#local_t), &Access::Owned);
                prepare.extend(rendered(c, &var, &quote!(#local_t), render));
                let f = blocking("invalidate_tag");
                invalidate.extend(awaited(quote! { #c::__private::#f(&#var) }));
            }
            Target::Call(call) => {
                let key = companion_call(c, call);
                // Each argument is borrowed once more than the user wrote, for the companion's
                // by-reference parameters; where that borrow is dereferenced again (a parameter
                // that is a reference already), clippy would blame the user's argument.
                prepare.extend(quote! {
                    #[allow(clippy::needless_borrow, clippy::needless_borrows_for_generic_args)]
                    let #var = #key;
                });
                let f = blocking("invalidate_key");
                invalidate.extend(awaited(quote! { #c::__private::#f(#var.0, &#var.1) }));
            }
        }
    }
    if plan.all {
        let f = blocking("invalidate_cache");
        invalidate.extend(awaited(quote! { #c::__private::#f(#cache) }));
    }

    let stmts = &block.stmts;
    let body = if plan.before {
        quote! {
            #invalidate
            #(#stmts)*
        }
    } else {
        let (ret, ret_span) = match &sig.output {
            ReturnType::Type(_, ty) => (erase_impl_trait(ty), first_last(ty.to_token_stream()).0),
            ReturnType::Default => (syn::parse_quote!(()), sig.ident.span()),
        };
        let run = run_body(c, is_async, &ret, ret_span, &block);
        quote! {
            // `__cache_out` is never borrowed, so it is not kept across the `.await`s below.
            let (#local_probe, #local_out) = #c::__private::OnSuccess::with(#run);
            let #local_split = {
                #[allow(unused_imports)]
                use #c::__private::OnSuccessFallback as _;
                #local_probe.split()
            };
            // A statement of its own, so that the scrutinee (which holds the error) is dropped
            // before the invalidations' `.await`: only the success is held across it.
            let #local_kept = match #c::__private::SuccessSplit::kept(&#local_split, #local_out) {
                ::core::result::Result::Ok(#local_kept) => #local_kept,
                ::core::result::Result::Err(#local_failed) => return #local_failed,
            };
            #invalidate
            #c::__private::SuccessSplit::rebuild(&#local_split, #local_kept)
        }
    };

    quote! {
        #(#outer_attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #import
            #prepare
            #body
        }
    }
}

/// `let var = { let mut buf = KeyBuf::new(); render; buf };`
fn rendered(c: &Path, var: &syn::Ident, buf: &TokenStream, render: TokenStream) -> TokenStream {
    quote! {
        let #var = {
            let mut #buf = #c::__private::KeyBuf::new();
            #render
            #buf
        };
    }
}

/// The body, run once: `async move { .. }.await`, or a `move` closure called at once.
fn run_body(
    c: &Path,
    is_async: bool,
    ret: &Type,
    ret_span: Span,
    block: &syn::Block,
) -> TokenStream {
    if is_async {
        let fake_return = fake_return(ret, ret_span);
        let stmts = &block.stmts;
        quote! {
            async move {
                #fake_return
                #(#stmts)*
            }
            .await
        }
    } else {
        quote! { #c::__private::call_body(move || -> #ret #block) }
    }
}

/// `companion_key(get_user::__cache_key_get_user(&(id)))`: the key `get_user(id)` would use.
///
/// The companion's name is spanned on the function's name as written, so a function that is not
/// `#[cached]` is reported there; each argument is borrowed with a span covering it, so a wrong
/// type is reported at that argument.
fn companion_call(c: &Path, call: &CachedCall) -> TokenStream {
    let (first, last) = first_last(call.expr.to_token_stream());
    let args = call.args.iter().map(borrowed);
    let args = group(quote! { #(#args),* }, last);
    let callee = match &call.callee {
        Callee::Path(path) => {
            let mut path = path.clone();
            if let Some(last) = path.path.segments.last_mut() {
                last.ident = companion_ident(&last.ident, last.ident.span());
            }
            quote! { #path #args }
        }
        Callee::Method {
            receiver,
            method,
            turbofish,
        } => {
            let method = companion_ident(method, method.span());
            let receiver = group(receiver.to_token_stream(), first);
            quote! { #receiver.#method #turbofish #args }
        }
    };
    let c = respan(c, first);
    let args = group(callee, last);
    quote_spanned! {first=> #c::__private::companion_key #args }
}

/// `&(arg)`, spanned from the argument's first token to its last.
fn borrowed(arg: &Expr) -> TokenStream {
    let (first, last) = first_last(arg.to_token_stream());
    let amp = quote_spanned!(first=> &);
    let arg = group(arg.to_token_stream(), last);
    quote! { #amp #arg }
}
