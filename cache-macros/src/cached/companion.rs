//! The key companion of a `#[cached]` function: a hidden function next to it that renders the
//! key a call with the same arguments would use, for `#[invalidates(get_user(id))]`.
//!
//! ```text
//! #[cached(cache = "users", key = "user:{id}")]
//! pub async fn get_user(id: u64, Path(org): Path<u32>) -> Result<User, Error> { .. }
//!
//! #[doc(hidden)]
//! pub fn __cache_key_get_user(id: &u64, __cache_arg_1: &Path<u32>) -> (&'static str, KeyBuf) {
//!     let Path(org) = __cache_arg_1;
//!     let mut __k = KeyBuf::new();
//!     /* the same rendering as in get_user, from the same plan */
//!     ("users", __k)
//! }
//! ```
//!
//! It takes every argument by reference (a shared reference as it is, unless to a type parameter
//! or an `impl Trait`), with the function's own
//! types, generics and where clause, so a call site passes what it would pass to the function,
//! borrowed, and the compiler checks it. The key is written by the same code as the function's (`expand::key_body`); only the
//! way a binding is reached differs, and [`Access`] makes every `KeyBuf` method see the same type
//! as in the function, so the two keys are the same bytes. In an `impl` block it is an associated
//! function (`&self` for any receiver), called as `Self::__cache_key_get(self, ..)`.
//!
//! A `key = <expression>` is the user's code over owned arguments and may not compile over
//! borrowed ones; its companion returns `KeyIsAnExpression` instead, which the call site turns
//! into an error that says so.

use std::collections::HashMap;

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::visit_mut::VisitMut;
use syn::{FnArg, ItemFn, Pat, PatIdent};

use super::check::{KeyPlan, Plan};
use super::expand::key_body;
use crate::codegen::{Access, local};
use crate::signature::cfg_attrs;

/// The companion's name for a function named `ident`.
pub(crate) fn companion_ident(ident: &Ident, span: Span) -> Ident {
    format_ident!("__cache_key_{}", ident.unraw(), span = span)
}

pub(crate) fn companion(plan: &Plan, item: &ItemFn) -> TokenStream {
    let c = &plan.krate.in_body();
    let import = plan.krate.import();
    let sig = &item.sig;
    let vis = &item.vis;
    let name = companion_ident(&sig.ident, sig.ident.span());
    let item_cfgs = cfg_attrs(&item.attrs);
    let generics = &sig.generics;
    let where_clause = &generics.where_clause;

    let mut params = Vec::new();
    let mut destructure = TokenStream::new();
    let mut access = HashMap::new();
    for (i, arg) in sig.inputs.iter().enumerate() {
        match arg {
            FnArg::Receiver(receiver) => {
                let self_token = receiver.self_token;
                params.push(quote! { &#self_token });
                // `self` by value is `*self` here; `&self` is itself. (`&mut self` and
                // `self: Box<Self>` become `&Self`: the same `Display`, the same fields.)
                let by_value = receiver.reference.is_none() && receiver.colon_token.is_none();
                let prefix = if by_value {
                    quote!(*)
                } else {
                    TokenStream::new()
                };
                access.insert("self".to_owned(), prefix);
            }
            FnArg::Typed(typed) => {
                // A parameter configured out of the function is out of the companion too.
                let cfgs = cfg_attrs(&typed.attrs);
                let ty = &typed.ty;
                // `&impl A + B` is ambiguous.
                let ty = match &**ty {
                    syn::Type::ImplTrait(_) => quote! { (#ty) },
                    _ => quote! { #ty },
                };
                match &*typed.pat {
                    Pat::Ident(PatIdent {
                        by_ref,
                        ident,
                        subpat: None,
                        ..
                    }) => {
                        // A shared reference is taken as it is, so that a call site's `&(arg)`
                        // reaches it by deref coercion (`&&String` to `&str`), as a call of the
                        // function itself would. Not a reference to a type parameter or an
                        // `impl Trait` (`&T`): there `&(arg)` would make `T` a reference
                        // (`&str` for `str`), which a default key spells; borrowed once more,
                        // `T` is inferred as in a call of the function.
                        let shared_ref = matches!(
                            &*typed.ty,
                            syn::Type::Reference(r)
                                if r.mutability.is_none() && !is_generic(&r.elem, generics)
                        );
                        // The derefs (or borrow) that give the binding's type in the function.
                        let prefix = match (shared_ref, by_ref.is_some()) {
                            (true, false) | (false, true) => TokenStream::new(),
                            (true, true) => quote!(&),
                            (false, false) => quote!(*),
                        };
                        if shared_ref {
                            params.push(quote! { #(#cfgs)* #ident: #ty });
                        } else {
                            params.push(quote! { #(#cfgs)* #ident: &#ty });
                        }
                        access.insert(ident.to_string(), prefix);
                    }
                    pat => {
                        let arg_name = local(&format!("__cache_arg_{i}"));
                        params.push(quote! { #(#cfgs)* #arg_name: &#ty });
                        let mut pat = pat.clone();
                        Unbind {
                            access: &mut access,
                            derefs: 0,
                        }
                        .visit_pat_mut(&mut pat);
                        destructure.extend(quote! { #(#cfgs)* let #pat = #arg_name; });
                    }
                }
            }
        }
    }

    let cache = &plan.cache;
    let local_k = local("__k");
    let body = match &plan.key {
        KeyPlan::Expr(_) => quote! { #c::__private::KeyIsAnExpression },
        _ => {
            let mut checks = TokenStream::new();
            let render = key_body(plan, &mut checks, &Access::Prefixed(&access));
            // A template's `Display` checks are the function's, so a placeholder without
            // `Display` is one error (rustc drops the identical copy). A default key's checks are
            // left out: over borrowed arguments they would name other types.
            if !matches!(plan.key, KeyPlan::Template(_)) {
                checks = TokenStream::new();
            }
            quote! {
                #destructure
                #checks
                let mut #local_k = #c::__private::KeyBuf::new();
                #render
                (#cache, #local_k)
            }
        }
    };
    // The signature is outside the body's `use`: it names the crate by its path.
    let krate = plan.krate.path();
    let ret = match &plan.key {
        KeyPlan::Expr(_) => quote! { #krate::__private::KeyIsAnExpression },
        _ => quote! { (&'static str, #krate::__private::KeyBuf) },
    };
    let fn_token = quote_spanned!(sig.fn_token.span=> fn);
    quote! {
        #(#item_cfgs)*
        #[doc(hidden)]
        #[allow(
            dead_code,
            missing_docs,
            non_snake_case,
            unreachable_pub,
            unused_parens,
            unused_variables,
            unknown_lints,
            clippy::all,
            clippy::pedantic,
            clippy::nursery
        )]
        #vis #fn_token #name #generics (#(#params),*) -> #ret #where_clause {
            #import
            #body
        }
    }
}

/// Whether `ty` is one of the function's type parameters or an `impl Trait`, as written, or a
/// reference to one (`&T`: behind `&&T` too, the call site's borrow would be taken into `T`).
fn is_generic(ty: &syn::Type, generics: &syn::Generics) -> bool {
    match ty {
        syn::Type::Paren(p) => is_generic(&p.elem, generics),
        syn::Type::Group(g) => is_generic(&g.elem, generics),
        syn::Type::Reference(r) => is_generic(&r.elem, generics),
        syn::Type::ImplTrait(_) => true,
        syn::Type::Path(p) if p.qself.is_none() => p
            .path
            .get_ident()
            .is_some_and(|ident| generics.type_params().any(|param| param.ident == *ident)),
        _ => false,
    }
}

/// Rewrites an argument pattern to bind by reference when matched against `&Arg`: binding modes
/// (`mut`, `ref`) and reference patterns (`&x`) come off, so default binding modes make every
/// binding a reference, and records how each binding is then reached (see [`Access`]): a binding
/// under `n` reference patterns is now `n + 1` references deeper than in the function.
struct Unbind<'a> {
    access: &'a mut HashMap<String, TokenStream>,
    /// Reference patterns directly around the current pattern.
    derefs: usize,
}

impl VisitMut for Unbind<'_> {
    fn visit_pat_mut(&mut self, pat: &mut Pat) {
        match pat {
            Pat::Reference(reference) => {
                let inner =
                    std::mem::replace(&mut *reference.pat, Pat::Verbatim(TokenStream::new()));
                *pat = inner;
                self.derefs += 1;
                self.visit_pat_mut(pat);
                self.derefs -= 1;
            }
            Pat::Paren(paren) => self.visit_pat_mut(&mut paren.pat),
            Pat::Ident(ident) => {
                // A by-value binding under `n` reference patterns is now `&(&^n T)`; a `ref`
                // binding is `&T`, as in the function.
                let prefix = if ident.by_ref.is_some() {
                    TokenStream::new()
                } else {
                    let stars = (0..=self.derefs).map(|_| quote!(*));
                    quote!(#(#stars)*)
                };
                self.access.insert(ident.ident.to_string(), prefix);
                ident.by_ref = None;
                ident.mutability = None;
                if let Some((_, sub)) = &mut ident.subpat {
                    let derefs = std::mem::take(&mut self.derefs);
                    self.visit_pat_mut(sub);
                    self.derefs = derefs;
                }
            }
            _ => {
                let derefs = std::mem::take(&mut self.derefs);
                syn::visit_mut::visit_pat_mut(self, pat);
                self.derefs = derefs;
            }
        }
    }
}
