//! The rules that need the function: what the signature may be, what the return type may be,
//! what a placeholder or `skip` may name, and which options go together. Turns [`Args`] and the
//! function into a [`Plan`], the resolved configuration that `expand.rs` writes out as is.

use proc_macro2::Span;
use quote::ToTokens;
use syn::visit::Visit;
use syn::{Expr, FnArg, GenericParam, Ident, ItemFn, LitBool, Path, ReturnType, Type, Visibility};

use super::parse::{Args, CacheIfTokens, KeySpec};
use crate::cache_if::parse::{Condition, parse_condition};
use crate::codegen::{CratePath, first_last};
use crate::errors::Errors;
use crate::key_template::Template;
use crate::signature::{
    Inputs, bound_names, has_impl_trait, is_future, is_state_extractor, mentions_self_type,
    per_user_extractor, quoted_list,
};

/// Everything the expansion needs, checked.
pub(crate) struct Plan {
    /// Path to `cache_core` (`crate = "..."`, default `::cache_core`).
    pub(crate) krate: CratePath,
    pub(crate) cache: String,
    /// 0: the cache policy's TTL.
    pub(crate) ttl_ms: u64,
    pub(crate) key: KeyPlan,
    pub(crate) tags: Vec<Template>,
    /// `cache_none = true`, kept for the span of the check that the return type is an `Option`.
    pub(crate) cache_none: Option<LitBool>,
    pub(crate) ret: Type,
    /// From `#[cache_if]`, stacked on the function in either order.
    pub(crate) condition: Option<Condition>,
    /// The paths of the `#[cache_if]` attributes taken off the function (see `CacheIfTokens`).
    pub(crate) consumed: Vec<Path>,
    /// Whether to emit the key companion that `#[invalidates(f(args))]` calls (see
    /// [`companion_is_safe`]).
    pub(crate) companion: bool,
    pub(crate) fresh: FreshPlan,
}

/// Stale-while-revalidate, fail-safe, timeouts, refresh-ahead and jitter, as written.
#[derive(Default)]
pub(crate) struct FreshPlan {
    pub(crate) stale_ms: u64,
    pub(crate) fail_safe_ms: u64,
    pub(crate) soft_timeout_ms: u64,
    /// The hard timeout, with its keyword's span (where a return type that cannot hold a timeout
    /// error is reported).
    pub(crate) hard_timeout: Option<(Span, u64)>,
    /// `Some(None)`: XFetch; `Some(Some(f))`: refresh after fraction `f` of the TTL.
    pub(crate) refresh: Option<Option<f64>>,
    pub(crate) jitter: u8,
    /// The body may run after the call returns, so the job is detachable.
    pub(crate) detachable: bool,
}

pub(crate) enum KeyPlan {
    Template(Template),
    Expr(Box<Expr>),
    Default(DefaultKey),
}

/// The key of a function without `key = ...`: its path, its type arguments and a hash of its
/// arguments.
pub(crate) struct DefaultKey {
    pub(crate) fn_name: String,
    /// The function is in an `impl` or a trait and names `Self`, whose type goes in the key.
    pub(crate) self_ty: bool,
    pub(crate) generics: Vec<GenericKeyPart>,
    pub(crate) args: Vec<KeyArg>,
}

pub(crate) enum GenericKeyPart {
    /// A type parameter `T`, written by its type name.
    Type(Ident),
    /// A const parameter `N`, written by value.
    Const(Ident),
    /// A binding of an argument whose type holds `impl Trait` (`x: impl Trait`, or each name of
    /// a pattern over such a type): its type, written by name (and the argument's `#[cfg]`s).
    ImplArg(Ident, Vec<syn::Attribute>),
}

/// An argument hashed into a default key, with the span its type check is reported at.
pub(crate) struct KeyArg {
    pub(crate) ident: Ident,
    /// The first and last token of the argument's type (or of its name in a pattern), so a
    /// missing `Serialize` is underlined there.
    pub(crate) span: (Span, Span),
    /// The argument's `#[cfg]`s: configured out, it is not in the key.
    pub(crate) cfgs: Vec<syn::Attribute>,
}

/// Checks `args` against `item`. `None` if anything was wrong (all of it is in `errors`).
pub(crate) fn check(args: Args, item: &ItemFn, errors: &Errors) -> Option<Plan> {
    let sig = &item.sig;
    if let Some(constness) = &sig.constness {
        errors.spanned_by(
            constness,
            "`#[cached]` cannot be applied to a `const fn`: a cache is read at run time; remove `const` or `#[cached]`",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned_by(
            abi,
            "`#[cached]` cannot be applied to an `extern` function; cache a Rust function that it calls instead",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned_by(
            variadic,
            "`#[cached]` cannot be applied to a variadic function",
        );
    }
    let ret = check_return(item, errors);
    let fresh = fresh_plan(&args, sig, errors);
    let inputs = Inputs::of(sig);
    let fn_name = sig.ident.to_string();

    let key = match args.key {
        Some(KeySpec::Template(mut template)) => {
            inputs.check_placeholders(&mut template, &fn_name, errors);
            KeyPlan::Template(template)
        }
        Some(KeySpec::Expr(expr)) => KeyPlan::Expr(expr),
        None => KeyPlan::Default(default_key(item, &inputs, args.skip.as_ref(), errors)),
    };
    if let (Some(skip), KeyPlan::Template(_) | KeyPlan::Expr(_)) = (&args.skip, &key) {
        errors.at(
            skip.keyword,
            "`skip` has no effect with `key`: it leaves arguments out of the default key only; remove `skip`, the key names exactly what it uses",
        );
    }
    let mut tags = args.tags.unwrap_or_default();
    for tag in &mut tags {
        inputs.check_placeholders(tag, &fn_name, errors);
    }
    let consumed = args
        .cache_if
        .iter()
        .filter_map(|c| c.path.clone())
        .collect();
    let condition = condition(args.cache_if, &fn_name, errors);

    if !errors.is_empty() {
        return None;
    }
    Some(Plan {
        krate: CratePath::new(args.krate),
        cache: args
            .cache
            .map_or_else(|| "default".to_owned(), |lit| lit.value()),
        ttl_ms: args.ttl.map_or(0, |ttl| ttl.ms),
        key,
        tags,
        cache_none: args.cache_none.filter(|b| b.value),
        ret: ret?,
        condition,
        consumed,
        companion: companion_is_safe(item),
        fresh,
    })
}

/// Checks the freshness options against the function: timeouts need an `async fn`, and modes
/// that run the body after the call returns need arguments the body can own.
fn fresh_plan(args: &Args, sig: &syn::Signature, errors: &Errors) -> FreshPlan {
    if sig.asyncness.is_none() {
        for (name, timed) in [
            ("timeout", &args.timeout),
            ("soft_timeout", &args.soft_timeout),
        ] {
            if let Some(t) = timed {
                errors.at(
                    t.span,
                    format!(
                        "`{name}` needs an `async fn`: a sync body cannot be interrupted; make `{}` async, or remove `{name}`",
                        sig.ident
                    ),
                );
            }
        }
    }
    if let (Some(soft), Some(hard)) = (&args.soft_timeout, &args.timeout)
        && soft.ms >= hard.ms
    {
        errors.at(
            soft.span,
            format!(
                "`soft_timeout` ({} ms) must be shorter than `timeout` ({} ms): the hard timeout ends the wait first, so the soft one would never answer with the fallback",
                soft.ms, hard.ms
            ),
        );
    }
    let background = [
        args.stale.as_ref().map(|t| ("stale", t.span)),
        args.refresh_ahead
            .as_ref()
            .map(|r| ("refresh_ahead", r.span)),
        args.soft_timeout.as_ref().map(|t| ("soft_timeout", t.span)),
    ];
    let detachable = background.iter().any(Option::is_some);
    if let Some((option, _)) = background.iter().flatten().next() {
        owned_arguments(sig, option, errors);
    }
    let ms = |t: &Option<super::parse::Timed>| t.as_ref().map_or(0, |t| t.ms);
    FreshPlan {
        stale_ms: ms(&args.stale),
        fail_safe_ms: ms(&args.fail_safe),
        soft_timeout_ms: ms(&args.soft_timeout),
        hard_timeout: args.timeout.as_ref().map(|t| (t.span, t.ms)),
        refresh: args.refresh_ahead.as_ref().map(|r| r.fraction),
        jitter: args.jitter.map_or(0, |(_, p)| p),
        detachable,
    }
}

/// A body that runs after the call returns cannot borrow: every argument must be owned.
fn owned_arguments(sig: &syn::Signature, option: &str, errors: &Errors) {
    let advice = format!(
        "`{option}` runs the body in the background after the call returns, so the body cannot borrow"
    );
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => {
                // `&self`, and the typed forms that borrow: `self: &Self`, `self: Pin<&mut Self>`.
                let mut finder = Borrows::default();
                finder.visit_type(&receiver.ty);
                if receiver.reference.is_some() || finder.found.is_some() {
                    errors.spanned_by(
                        receiver,
                        format!(
                            "{advice} `self`; take `self` by value (for example `self: Arc<Self>`), or remove `{option}`"
                        ),
                    );
                }
            }
            FnArg::Typed(typed) => {
                let mut finder = Borrows::default();
                finder.visit_type(&typed.ty);
                if let Some(what) = finder.found {
                    errors.spanned_by(
                        &typed.ty,
                        format!(
                            "{advice} this argument ({what}); take it by value (`String` for `&str`, `Arc<T>` for `&T`), or remove `{option}`"
                        ),
                    );
                }
            }
        }
    }
}

/// Finds a reference or a non-`'static` lifetime in an argument's type.
///
/// Not the lifetimes of a closure's signature: `impl Fn(&str) -> String + 'static` owns what it
/// captures, and the `&str` it is called with is a lifetime of each call (elided in `Fn(..)`
/// sugar, or named by `for<'a>`), not a borrow the argument holds.
#[derive(Default)]
struct Borrows {
    found: Option<&'static str>,
    /// Inside the parentheses or return type of `Fn(..) -> ..` sugar: elided lifetimes there are
    /// the call's.
    fn_sugar: usize,
    /// Lifetimes bound by an enclosing `for<'a>`.
    bound: Vec<syn::Ident>,
}

impl Borrows {
    fn borrows(&self, lifetime: &syn::Lifetime) -> bool {
        lifetime.ident != "static" && !self.bound.contains(&lifetime.ident)
    }
}

impl Visit<'_> for Borrows {
    fn visit_type_reference(&mut self, ty: &syn::TypeReference) {
        let borrowed = match &ty.lifetime {
            None => self.fn_sugar == 0,
            Some(lifetime) => self.borrows(lifetime),
        };
        if borrowed {
            self.found.get_or_insert("a reference");
        }
        syn::visit::visit_type_reference(self, ty);
    }

    fn visit_lifetime(&mut self, lifetime: &syn::Lifetime) {
        if self.borrows(lifetime) {
            self.found.get_or_insert("a borrowed lifetime");
        }
    }

    fn visit_parenthesized_generic_arguments(&mut self, args: &syn::ParenthesizedGenericArguments) {
        self.fn_sugar += 1;
        syn::visit::visit_parenthesized_generic_arguments(self, args);
        self.fn_sugar -= 1;
    }

    fn visit_trait_bound(&mut self, bound: &syn::TraitBound) {
        let names = bound.lifetimes.iter().flat_map(|l| &l.lifetimes);
        let before = self.bound.len();
        self.bound.extend(names.filter_map(|p| match p {
            syn::GenericParam::Lifetime(l) => Some(l.lifetime.ident.clone()),
            _ => None,
        }));
        // The binder's own `'a` is a declaration, not a use: only the bound itself is visited.
        self.visit_path(&bound.path);
        self.bound.truncate(before);
    }

    fn visit_type_bare_fn(&mut self, _: &syn::TypeBareFn) {}
    fn visit_type_trait_object(&mut self, _: &syn::TypeTraitObject) {}
}

/// The one `#[cache_if]` of the function, if any; a second is an error at it.
fn condition(given: Vec<CacheIfTokens>, fn_name: &str, errors: &Errors) -> Option<Condition> {
    let mut given = given.into_iter();
    let first = given.next()?;
    for extra in given {
        errors.at(
            extra.span,
            format!(
                "`#[cache_if]` is given twice on `{fn_name}`; combine them into one, as in `#[cache_if(a && b, result = ...)]`"
            ),
        );
    }
    Some(parse_condition(first.tokens, first.span, errors))
}

/// Whether a companion item next to the function is sure to be allowed where the function is.
///
/// In `impl Trait for Type` no item may be added, and an attribute cannot tell that block from an
/// inherent `impl` or a trait. A function with a visibility (`pub`, `pub(crate)`, `pub(self)`)
/// is in none of the trait kinds; one that takes no `self` and names no `Self` is taken to be a
/// free function (a trait impl's associated function of that shape is the exception; see the
/// attribute's `# Limitations`).
fn companion_is_safe(item: &ItemFn) -> bool {
    let in_impl_or_trait = Inputs::of(&item.sig).has_receiver || mentions_self_type(&item.sig);
    !matches!(item.vis, Visibility::Inherited) || !in_impl_or_trait
}

/// The return type, if it is one a cache can hold.
fn check_return(item: &ItemFn, errors: &Errors) -> Option<Type> {
    let ReturnType::Type(_, ty) = &item.sig.output else {
        errors.spanned_by(
            &item.sig.ident,
            "a function that returns nothing has nothing to cache; return the value to cache, or remove `#[cached]`",
        );
        return None;
    };
    match unparen(ty) {
        Type::Tuple(t) if t.elems.is_empty() => {
            errors.spanned_by(
                ty,
                "a function that returns nothing has nothing to cache; return the value to cache, or remove `#[cached]`",
            );
            return None;
        }
        Type::Never(_) => {
            errors.spanned_by(ty, "a function that never returns has nothing to cache");
            return None;
        }
        _ => {}
    }
    if item.sig.asyncness.is_none() && is_future(ty) {
        errors.spanned_by(
            ty,
            format!(
                "`#[cached]` cannot be applied to a function that returns a future: the cache would hold the future, not its output; make `{}` an `async fn` (in an `#[async_trait]` impl, put `#[cached]` on an `async fn` that the method awaits)",
                item.sig.ident
            ),
        );
        return None;
    }
    let mut finder = Unownable {
        errors,
        found: false,
    };
    finder.visit_type(ty);
    (!finder.found).then(|| (**ty).clone())
}

fn unparen(ty: &Type) -> &Type {
    match ty {
        Type::Paren(p) => unparen(&p.elem),
        Type::Group(g) => unparen(&g.elem),
        ty => ty,
    }
}

/// Reports what in a return type cannot outlive the call or cannot be named.
struct Unownable<'e> {
    errors: &'e Errors,
    found: bool,
}

impl Visit<'_> for Unownable<'_> {
    fn visit_type_impl_trait(&mut self, ty: &syn::TypeImplTrait) {
        self.found = true;
        self.errors.spanned_by(
            ty,
            "`#[cached]` functions must return a concrete type, not `impl Trait`: the cache stores and clones the value, so its type must be named; return the type itself (e.g. `Json<T>`, `String` or `Result<T, E>` instead of `impl IntoResponse`)",
        );
    }

    fn visit_type_reference(&mut self, ty: &syn::TypeReference) {
        self.found = true;
        self.errors.spanned_by(
            ty,
            "`#[cached]` functions must return an owned value, not a reference: a cached value outlives the call; return an owned type (`String` for `&str`, `T` for `&T`) or an `Arc<T>`",
        );
    }

    fn visit_lifetime(&mut self, lifetime: &syn::Lifetime) {
        if lifetime.ident != "static" {
            self.found = true;
            self.errors.spanned_by(
                lifetime,
                format!(
                    "`#[cached]` functions must return an owned value, not one that borrows for `{lifetime}`: a cached value outlives the call; return an owned type or an `Arc<T>`"
                ),
            );
        }
    }

    // Borrows in a function type's arguments (`Box<dyn Fn(&str)>`, `fn(&str)`) are not borrows of
    // the value; a trait object's own bounds are the compiler's to check.
    fn visit_type_bare_fn(&mut self, _: &syn::TypeBareFn) {}
    fn visit_type_trait_object(&mut self, _: &syn::TypeTraitObject) {}
    fn visit_type_macro(&mut self, _: &syn::TypeMacro) {}
}

/// A default key covers the request-shaped arguments only; an argument of a per-user extractor
/// type (`HeaderMap`, `TypedHeader<..>`, cookies, `Extension<..>`, the whole `Request`) that binds
/// a name and is not in `skip` is an error: the response may depend on who asked, and the key
/// would not say who.
fn per_user_inputs(sig: &syn::Signature, skipped: &[&Ident], errors: &Errors) {
    for arg in &sig.inputs {
        let FnArg::Typed(typed) = arg else { continue };
        let Some(extractor) = per_user_extractor(&typed.ty) else {
            continue;
        };
        let names = bound_names(&typed.pat);
        let unskipped: Vec<&Ident> = names.iter().filter(|n| !skipped.contains(n)).collect();
        let Some(first) = unskipped.first() else {
            continue;
        };
        let skip_list = unskipped
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        errors.spanned_by(
            &typed.ty,
            format!(
                "`#[cached]` on `{fn_name}`: `{first}` comes from `{extractor}`, per-user input that the default key does not cover, \
                 so the first caller's response would be served to every other user (a cross-user leak); \
                 give an explicit `key = \"...\"` that includes what the response depends on (such as the user's id), \
                 or add `skip({skip_list})` if the response does not depend on it; \
                 if this `{extractor}` is a type of your own rather than the extractor, name it by its path \
                 (such as `crate::{extractor}`) or import it under another name (`use ... as My{extractor}`), \
                 and it is hashed into the key like any other argument",
                fn_name = sig.ident,
            ),
        );
    }
}

/// A default key hashes a set as the sequence its iterator yields, and a `HashSet`'s order
/// differs between processes and between sets of equal contents: equal arguments would get other
/// keys (a miss each time, and as many entries in Redis). Maps are put in order when hashed; a
/// set cannot be told from a `Vec` there, whose order matters, so a `HashSet` argument (or one
/// holding a `HashSet`, as written in its type) is an error that says what to use instead.
fn unordered_sets(sig: &syn::Signature, skipped: &[&Ident], errors: &Errors) {
    struct Finder(Option<Ident>);
    impl Visit<'_> for Finder {
        fn visit_path_segment(&mut self, segment: &syn::PathSegment) {
            if self.0.is_none() && segment.ident.to_string().ends_with("HashSet") {
                self.0 = Some(segment.ident.clone());
            }
            syn::visit::visit_path_segment(self, segment);
        }
        fn visit_type_impl_trait(&mut self, _: &syn::TypeImplTrait) {}
        fn visit_type_trait_object(&mut self, _: &syn::TypeTraitObject) {}
    }
    for arg in &sig.inputs {
        let FnArg::Typed(typed) = arg else { continue };
        let names = bound_names(&typed.pat);
        let Some(name) = names.iter().find(|n| !skipped.contains(n)) else {
            continue;
        };
        let mut finder = Finder(None);
        finder.visit_type(&typed.ty);
        let Some(set) = finder.0 else { continue };
        errors.spanned_by(
            &typed.ty,
            format!(
                "`#[cached]` on `{fn_name}`: `{name}` is (or holds) a `{set}`, which iterates in a different order in every process, \
                 so equal sets would get different default keys; take a `BTreeSet` (or a sorted `Vec`) instead, \
                 give an explicit `key = ...` built from it in a fixed order, or add `skip({name})` if the result does not depend on it",
                fn_name = sig.ident,
            ),
        );
    }
}

fn default_key(
    item: &ItemFn,
    inputs: &Inputs,
    skip: Option<&super::parse::Skip>,
    errors: &Errors,
) -> DefaultKey {
    let sig = &item.sig;
    let mut skipped: Vec<&Ident> = Vec::new();
    for name in skip.map(|s| s.names.as_slice()).unwrap_or_default() {
        if name == "self" {
            errors.spanned_by(
                name,
                "`self` is never part of the default key; remove it from `skip`",
            );
        } else if inputs.find(&name.to_string()).is_none() {
            let names: Vec<String> = inputs
                .bindings
                .iter()
                .map(|b| b.ident.to_string())
                .collect();
            let could = if names.is_empty() {
                format!("`{}` takes no arguments", sig.ident)
            } else {
                format!("its arguments are {}", quoted_list(&names))
            };
            errors.spanned_by(
                name,
                format!(
                    "`skip` names `{name}`, which is not an argument of `{}`; {could}",
                    sig.ident
                ),
            );
        } else if skipped.contains(&name) {
            errors.spanned_by(name, format!("`{name}` is skipped twice"));
        } else {
            skipped.push(name);
        }
    }

    per_user_inputs(sig, &skipped, errors);
    unordered_sets(sig, &skipped, errors);

    // axum's `State<S>` is the application's shared state, the same for every request: it is
    // left out of the key (and need not be `Serialize`).
    let args = inputs
        .bindings
        .iter()
        .filter(|b| !skipped.iter().any(|s| **s == b.ident))
        .filter(|b| !is_state_extractor(&b.arg_ty))
        .map(|b| KeyArg {
            ident: b.ident.clone(),
            span: if b.whole_arg {
                first_last(b.arg_ty.to_token_stream())
            } else {
                (b.ident.span(), b.ident.span())
            },
            cfgs: b.cfgs.clone(),
        })
        .collect();

    let mut generics: Vec<GenericKeyPart> = sig
        .generics
        .params
        .iter()
        .filter_map(|p| match p {
            GenericParam::Type(t) => Some(GenericKeyPart::Type(t.ident.clone())),
            GenericParam::Const(c) => Some(GenericKeyPart::Const(c.ident.clone())),
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    // An `impl Trait` in a pattern argument's type (`Wrapped(v): Wrapped<impl Serialize>`) is
    // reached through the names the pattern binds: the argument itself is not one.
    generics.extend(
        inputs
            .bindings
            .iter()
            .filter(|b| has_impl_trait(&b.arg_ty))
            .map(|b| GenericKeyPart::ImplArg(b.ident.clone(), b.cfgs.clone())),
    );

    DefaultKey {
        fn_name: sig.ident.to_string(),
        self_ty: inputs.has_receiver || mentions_self_type(sig),
        generics,
        args,
    }
}
