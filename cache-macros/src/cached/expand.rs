//! Writes a checked [`Plan`] out as code. Nothing here validates: every error was found before.
//!
//! The function keeps its signature token for token; only its block is replaced by one that
//! renders the key and tags, picks the caching strategy, and hands the original body to
//! `cache_core::__private::cached_async` / `cached_sync` (see the "equivalent code" in the
//! attribute's docs).

use proc_macro2::{Literal, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::{AttrStyle, ItemFn, Path};

use super::check::{DefaultKey, GenericKeyPart, KeyPlan, Plan};
use super::companion;
use crate::cache_if::CONSUMED_MARKER;
use crate::codegen::{
    Access, fake_return, first_last, group, int_probe, local, render_template, respan,
    template_checks,
};

pub(crate) fn expand(plan: &Plan, item: ItemFn) -> TokenStream {
    let companion = if plan.companion {
        companion::companion(plan, &item)
    } else {
        TokenStream::new()
    };
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
    let ret = &plan.ret;
    let (ret_first, ret_last) = first_last(ret.to_token_stream());
    let cache = &plan.cache;
    let ttl_ms = Literal::u64_unsuffixed(plan.ttl_ms);

    // The expansion's locals, hygienic (see `local`).
    let local_k = local("__k");
    let local_t = local("__t");
    let local_value = local("__cache_value");
    let local_codec = local("__cache_codec");
    let local_call = local("__cache_call");
    let local_later = local("__cache_later");
    let local_guard = local("__cache_guard");
    let local_use = local("__cache_use");
    let local_body = local("__cache_body");
    let local_tags = local("__cache_tags");

    let mut checks = TokenStream::new();
    let key_body = key_body(plan, &mut checks, &Access::Owned);
    let tags_len = plan.tags.len();
    let tags = plan.tags.iter().map(|tag| {
        checks.extend(template_checks(c, tag, &Access::Owned));
        let body = render_template(c, tag, &quote!(#local_t), &Access::Owned);
        quote! {
            {
                let mut #local_t = #c::__private::KeyBuf::new();
                #body
                #local_t
            }
        }
    });
    let tags = quote! { [#(#tags),*] };

    // The strategy is passed straight into `cached_async`/`cached_sync`, and that call is spanned
    // on the return type: a value type that cannot be cached fails the call's `S: Strategy<R>`
    // bound, and rustc reports it once, underlining the return type (the call's own span and the
    // `.await`'s are the same, so their copies of the error are dropped as duplicates).
    let c_at_ret = respan(c, ret_first);
    // The codec for a remote tier, found by autoref specialization on the cached value type
    // (`ValueOf` picks `T` out of `Result<T, E>` / `Option<T>` without any bound): `Some` when it
    // is serde-serializable, `None` (memory only) otherwise. No bound can fail here, so a value
    // type that cannot be cached is still reported once, at the `cached_*` call below.
    let value_probe = if plan.cache_none.is_some() {
        quote! { #c::__private::CodecProbe::<#ret>::new() }
    } else {
        quote! { #c::__private::ValueOf::<#ret>::new().probe() }
    };
    let codec = quote! {
        let #local_codec = {
            #[allow(unused_imports)]
            use #c::__private::{ValueOfPlain as _, ViaNothing as _, ViaSerde as _};
            (&&#value_probe).codec()
        };
    };
    let (option_check, strategy) = match &plan.cache_none {
        Some(cache_none) => {
            // A local trait, so the message can say what `cache_none` needs; the check is a call
            // whose argument is spanned on `true`.
            let option_check = quote_spanned! {cache_none.span=>
                #[diagnostic::on_unimplemented(
                    message = "`cache_none = true` applies to functions returning `Option<T>`, not `{Self}`",
                    label = "this needs an `Option` return type",
                    note = "remove `cache_none`: a `Result` caches only `Ok`, any other type is cached whole"
                )]
                trait __CacheNoneNeedsOption {}
                impl<T> __CacheNoneNeedsOption for ::core::option::Option<T> {}
                fn __cache_none_check<R: __CacheNoneNeedsOption>(_: ::core::marker::PhantomData<R>) {}
                __cache_none_check(::core::marker::PhantomData::<#ret>);
            };
            let strategy = quote_spanned! {ret_last=>
                #c_at_ret::__private::PlainStrategy::<#ret>::new()
            };
            (option_check, strategy)
        }
        None => (
            TokenStream::new(),
            quote_spanned! {ret_last=>
                #c_at_ret::__private::Probe::<#ret>::new().strategy()
            },
        ),
    };
    // `#[cache_if(result = ...)]`: the predicate is called with `&R`; `R` is given so that a
    // closure's parameter type is known from the declared return type.
    let strategy = match plan.condition.as_ref().and_then(|c| c.result.as_ref()) {
        Some(keep) => {
            // The predicate is called through `keep`, whose `Fn(&R) -> bool` bound gives a
            // closure its parameter type and reports a wrong predicate once, at the predicate;
            // the closure around it always fits `store_if`.
            let (keep_first, _) = first_last(keep.to_token_stream());
            let c_at_keep = respan(c, keep_first);
            let keep = quote_spanned! {keep_first=>
                #c_at_keep::__private::keep::<#ret, _>(#keep, #local_value)
            };
            quote! {
                #c::__private::store_if::<#ret, _, _>(
                    #strategy,
                    move |#local_value: &#ret| -> bool { #keep },
                )
            }
        }
        None => strategy,
    };

    let strategy = quote_spanned! {ret_last=>
        #c_at_ret::__private::WithCodec::new(#strategy, #local_codec)
    };
    let is_async = sig.asyncness.is_some();
    let fresh = &plan.fresh;
    let job_fn = match (is_async, fresh.detachable) {
        (true, false) => "job",
        (true, true) => "detachable_job",
        (false, false) => "sync_job",
        (false, true) => "sync_detachable_job",
    };
    let job_fn = syn::Ident::new(job_fn, ret_last);
    // The error a hard timeout returns, checked against the return type at the `timeout` keyword.
    let on_timeout = fresh.hard_timeout.map(|(span, _)| {
        let c = respan(c, span);
        quote_spanned! {span=> .on_timeout(#c::__private::timeout_error::<#ret>()) }
    });
    let site = site_expr(c, cache, ttl_ms, fresh);
    let body = if is_async {
        let fake_return = fake_return(ret, ret_first);
        let stmts = &block.stmts;
        quote! {
            async move {
                #fake_return
                #(#stmts)*
            }
        }
    } else {
        quote! { move || -> #ret #block }
    };
    let cached_call = |body: TokenStream| {
        let job_args = group(quote! { #strategy, #body }, ret_last);
        let job = quote_spanned! {ret_last=> #c_at_ret::__private::#job_fn #job_args #on_timeout };
        let args = group(
            quote! { &__CACHE_SITE, &#local_k, &#local_tags, #job },
            ret_last,
        );
        if is_async {
            // The hit returns from the function itself, the value cloned into its return value
            // (see `cached_async`); the guard is dropped before the miss is awaited.
            let call = quote_spanned! {ret_last=> #c_at_ret::__private::cached_async #args };
            quote! {
                {
                    #[allow(unused_imports)]
                    use #c::__private::AsyncCachedWithoutJob as _;
                    let #local_call = #call;
                    let #local_later = {
                        let #local_guard = #c::__private::Guard::new();
                        match #local_call.lookup(&#local_guard) {
                            ::core::result::Result::Ok(#local_value) => {
                                return #local_call.rebuild(#local_value);
                            }
                            ::core::result::Result::Err(#local_later) => #local_later,
                        }
                    };
                    #local_call.miss(#local_later).await
                }
            }
        } else {
            quote_spanned! {ret_last=> #c_at_ret::__private::cached_sync #args }
        }
    };
    let key_type = quote! { #c::__private::KeyBuf };
    let (condition, call, rendered) = match plan.condition.as_ref().and_then(|c| c.when.as_ref()) {
        None => (
            TokenStream::new(),
            cached_call(body),
            quote! {
                #key_body
                let #local_tags: [#key_type; #tags_len] = #tags;
            },
        ),
        Some(when) => {
            // Checked first; the body is built once and either cached or run as it is.
            // As an `if` condition, a value of another type is reported at it, alone.
            let condition = quote! {
                #[allow(clippy::needless_bool)]
                let #local_use = if #when { true } else { false };
            };
            let cached = cached_call(quote!(#local_body));
            let run = if is_async {
                quote!(#local_body.await)
            } else {
                quote!(#local_body())
            };
            let call = quote! {
                let #local_body = #body;
                if #local_use {
                    #cached
                } else {
                    #c::__private::bypass(&__CACHE_SITE);
                    #run
                }
            };
            // A bypassed call does not use the cache, so it renders neither key nor tags: a key
            // may only make sense when the condition holds (`key = items[0]` under
            // `#[cache_if(!items.is_empty())]`), and a default key serializes every argument.
            let rendered = quote! {
                let #local_tags: [#key_type; #tags_len] = if #local_use {
                    #key_body
                    #tags
                } else {
                    ::core::array::from_fn(|_| #key_type::new())
                };
            };
            (condition, call, rendered)
        }
    };

    // `#[cache_if]` taken off the function: named again on an empty item, which it expands to
    // nothing, so that a `use cache_core::cache_if;` counts as used.
    let consumed = plan.consumed.iter().map(|path| {
        let span = path
            .segments
            .last()
            .map_or_else(proc_macro2::Span::call_site, |s| s.ident.span());
        let marker = syn::Ident::new(CONSUMED_MARKER, span);
        quote! { #[#path(#marker)] const _: () = (); }
    });

    quote! {
        #(#outer_attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #import
            #(#consumed)*
            #[allow(unused_imports)]
            use #c::__private::PlainFallback as _;
            static __CACHE_SITE: #c::__private::CallSite = #site;
            #checks
            #option_check
            #condition
            // Rendered in place: the buffer is never moved, so its inline bytes are never copied.
            let mut #local_k = #key_type::new();
            #rendered
            #codec
            #call
        }
        #companion
    }
}

/// `CallSite::new(cache, ttl)` with the freshness options chained on.
fn site_expr(
    c: &Path,
    cache: &str,
    ttl_ms: Literal,
    fresh: &super::check::FreshPlan,
) -> TokenStream {
    let mut site = quote! { #c::__private::CallSite::new(#cache, #ttl_ms) };
    let ms = Literal::u64_unsuffixed;
    if fresh.stale_ms != 0 {
        let v = ms(fresh.stale_ms);
        site.extend(quote! { .stale(#v) });
    }
    if fresh.fail_safe_ms != 0 {
        let v = ms(fresh.fail_safe_ms);
        site.extend(quote! { .fail_safe(#v) });
    }
    if fresh.soft_timeout_ms != 0 {
        let v = ms(fresh.soft_timeout_ms);
        site.extend(quote! { .soft_timeout(#v) });
    }
    if let Some((_, hard)) = fresh.hard_timeout {
        let v = ms(hard);
        site.extend(quote! { .hard_timeout(#v) });
    }
    match fresh.refresh {
        Some(None) => site.extend(quote! { .refresh_ahead(#c::RefreshAhead::xfetch()) }),
        Some(Some(fraction)) => {
            let f = Literal::f64_unsuffixed(fraction);
            site.extend(quote! { .refresh_ahead(#c::RefreshAhead::After(#f)) });
        }
        None => {}
    }
    if fresh.jitter != 0 {
        let v = Literal::u8_unsuffixed(fresh.jitter);
        site.extend(quote! { .jitter(#v) });
    }
    site
}

/// `__k.lit(..); __k.part(..);`: renders the key into `__k`, reaching the arguments through
/// `access`; `Display`/`Serialize` checks go into `checks`. `None` for a `key = <expression>` in
/// a companion (see `companion.rs`).
pub(super) fn key_body(plan: &Plan, checks: &mut TokenStream, access: &Access<'_>) -> TokenStream {
    let c = &plan.krate.in_body();
    let local_k = local("__k");
    match &plan.key {
        KeyPlan::Template(template) => {
            checks.extend(template_checks(c, template, access));
            render_template(c, template, &quote!(#local_k), access)
        }
        KeyPlan::Expr(expr) => quote! { #local_k.whole(&(#expr)); },
        KeyPlan::Default(key) => default_key(c, key, checks, access),
    }
}

/// `module::fn::<T,U>:<hash of the arguments>` (`scope::fn..` in an `impl`, a trait or another
/// function), with a `Serialize` check per argument.
fn default_key(
    c: &Path,
    key: &DefaultKey,
    checks: &mut TokenStream,
    access: &Access<'_>,
) -> TokenStream {
    let fn_name = &key.fn_name;
    let local_k = local("__k");
    let local_scope = local("__cache_scope");
    // `module::name` for a function of its module, as always; in an `impl`, a trait or another
    // function, the path of that scope instead, so that two traits' methods `name` on one type,
    // or two local `fn inner`s of one module, do not share entries (see `ItemScope`). The marker
    // is declared here, in the body of the function or of its key companion: both are in the same
    // scope, so both keys start the same.
    // In a generic impl or a trait's provided method, the marker's name spells the scope's type
    // arguments `_` or not at all; a closure's spells those of the instance (see `ItemScope`).
    let scope = quote! {
        __CACHE_KEY_SCOPE.nested(
            #c::__private::core::any::type_name::<__CacheKeyScope>,
            #c::__private::type_name_of(&|| ()),
            ::core::module_path!(),
        )
    };
    let mut out = quote! {
        #[allow(dead_code)]
        struct __CacheKeyScope;
        static __CACHE_KEY_SCOPE: #c::__private::ItemScope = #c::__private::ItemScope::new();
        match #scope {
            ::core::option::Option::None => {
                #local_k.lit(::core::concat!(::core::module_path!(), "::", #fn_name));
            }
            ::core::option::Option::Some(#local_scope) => {
                #local_k.lit(#local_scope);
                #local_k.lit(::core::concat!("::", #fn_name));
            }
        }
    };

    // Each part with the `#[cfg]`s of the argument it reads, if any.
    let mut generics: Vec<(&[syn::Attribute], TokenStream)> = Vec::new();
    if key.self_ty {
        generics.push((
            &[],
            quote! { #local_k.lit("Self="); #local_k.type_name::<Self>(); },
        ));
    }
    for part in &key.generics {
        generics.push(match part {
            GenericKeyPart::Type(ident) => (&[], quote! { #local_k.type_name::<#ident>(); }),
            GenericKeyPart::Const(ident) => (&[], quote! { #local_k.part(&#ident); }),
            GenericKeyPart::ImplArg(ident, cfgs) => {
                let value = access.reference(ident, ident.span());
                let part = quote! {
                    #local_k.lit(#c::__private::core::any::type_name_of_val(#value));
                };
                (cfgs, part)
            }
        });
    }
    if !generics.is_empty() {
        let mut first = true;
        out.extend(quote! { #local_k.lit("::<"); });
        for (cfgs, generic) in generics {
            let separator = (!std::mem::take(&mut first)).then(|| quote! { #local_k.lit(","); });
            out.extend(quote! { #(#cfgs)* { #separator #generic } });
        }
        out.extend(quote! { #local_k.lit(">"); });
    }

    if !key.args.is_empty() {
        // An argument under `#[cfg]` is a tuple element under it too: configured out, it is not
        // hashed (and not named, so the function still compiles).
        let refs = key.args.iter().map(|arg| {
            let cfgs = &arg.cfgs;
            let value = access.reference(&arg.ident, arg.ident.span());
            quote! { #(#cfgs)* #value }
        });
        let args = args_tuple(refs.collect());
        // One argument that is a primitive integer (an id) takes the one-store path of
        // `args_hash_or_int`; anything else (`None`) goes through serde, which writes the same
        // key more slowly (and is all an argument that may be configured out can take).
        let int = match key.args.as_slice() {
            [arg] if arg.cfgs.is_empty() => {
                let span = arg.ident.span();
                int_probe(c, span, &access.reference(&arg.ident, span))
            }
            _ => quote! { ::core::option::Option::None },
        };
        // Each argument's `Serialize` is checked on its own (`assert_key_arg` below, spanned on
        // the argument). The tuple is hashed through "autoref specialization": when it is not
        // `KeyArgsTuple` the method resolves to the fallback trait instead, so the only error is
        // the per-argument one. The fallback can only be chosen when some argument is not
        // `Serialize` (`KeyArgsTuple` and serde cover tuples of up to 16 elements, hence
        // `args_tuple`), and then the build has failed already; if it were ever chosen
        // otherwise, its post-monomorphization `const` fails the build rather than hashing
        // nothing.
        out.extend(quote! {
            #local_k.lit(":");
            {
                struct __CacheArgs<A>(A);
                trait __CacheHashArgs {
                    fn __cache_hash(
                        &self,
                        key: &mut #c::__private::KeyBuf,
                        int: ::core::option::Option<#c::__private::Int>,
                    );
                }
                impl<A: #c::__private::KeyArgsTuple> __CacheHashArgs for __CacheArgs<A> {
                    #[inline]
                    fn __cache_hash(
                        &self,
                        key: &mut #c::__private::KeyBuf,
                        int: ::core::option::Option<#c::__private::Int>,
                    ) {
                        key.args_hash_or_int(&self.0, int);
                    }
                }
                #[allow(dead_code)]
                trait __CacheArgsNotKeyArgs {
                    fn __cache_hash(
                        &self,
                        key: &mut #c::__private::KeyBuf,
                        int: ::core::option::Option<#c::__private::Int>,
                    );
                }
                #[allow(dead_code)]
                struct __CacheNotKeyArgs<A>(A);
                impl<A> __CacheNotKeyArgs<A> {
                    const FAIL: () = ::core::panic!(
                        "`#[cached]`: a default-key argument does not implement `serde::Serialize`"
                    );
                }
                impl<A> __CacheArgsNotKeyArgs for &__CacheArgs<A> {
                    fn __cache_hash(
                        &self,
                        _: &mut #c::__private::KeyBuf,
                        _: ::core::option::Option<#c::__private::Int>,
                    ) {
                        #[allow(clippy::let_unit_value)]
                        let () = __CacheNotKeyArgs::<A>::FAIL;
                    }
                }
                (&__CacheArgs(#args)).__cache_hash(&mut #local_k, #int);
            }
        });
        for arg in &key.args {
            // `&` on the type's first token and the name on its last: the expression `&arg`
            // underlines the whole type. Only the name's location moves: it still resolves as
            // written, since in a `macro_rules!` the name and the type may come from different
            // hygiene contexts (`fn $name($arg: u64)`), and the type's would not see the name.
            let (first, last) = arg.span;
            let c = respan(c, first);
            let mut ident = arg.ident.clone();
            ident.set_span(ident.span().located_at(last));
            let amp = quote_spanned!(first=> &);
            let cfgs = &arg.cfgs;
            checks.extend(quote_spanned! {last=>
                #(#cfgs)*
                #c::__private::assert_key_arg(#amp #ident);
            });
        }
    }
    out
}

/// `(a, b, ...)`, nested in tuples of at most 16 (the largest tuple serde serializes).
fn args_tuple(items: Vec<TokenStream>) -> TokenStream {
    if items.len() <= 16 {
        return quote! { (#(#items,)*) };
    }
    let chunks = items.chunks(16).map(|chunk| args_tuple(chunk.to_vec()));
    args_tuple(chunks.collect())
}
