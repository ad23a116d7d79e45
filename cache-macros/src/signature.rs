//! What a function's arguments bind: `id: u64` binds `id`; `Path(id): Path<u64>` binds `id`;
//! `(a, b): (u32, u32)` binds `a` and `b`; `_: T` binds nothing; `self` is the receiver.

use proc_macro2::{Ident, Span};
use syn::visit::Visit;
use syn::{Attribute, FnArg, Pat, Signature, Type};

use crate::errors::Errors;
use crate::key_template::Template;

/// One name bound by an argument pattern.
pub(crate) struct Binding {
    pub(crate) ident: Ident,
    /// The type of the whole argument this name comes from.
    pub(crate) arg_ty: Type,
    /// The argument is exactly this name (`id: u64`, `mut id: u64`), not a part of a pattern.
    pub(crate) whole_arg: bool,
    /// The argument's `#[cfg(..)]` attributes: generated code that reads it carries them too, so
    /// that it is left out where the argument is configured out.
    pub(crate) cfgs: Vec<Attribute>,
}

/// The names a signature binds, in order.
pub(crate) struct Inputs {
    /// The function takes `self` in some form.
    pub(crate) has_receiver: bool,
    /// The `self` token, if any, for the resolution of a template's `{self..}`.
    receiver: Option<Span>,
    pub(crate) bindings: Vec<Binding>,
}

impl Inputs {
    pub(crate) fn of(sig: &Signature) -> Inputs {
        let mut inputs = Inputs {
            has_receiver: false,
            receiver: None,
            bindings: Vec::new(),
        };
        for arg in &sig.inputs {
            match arg {
                FnArg::Receiver(receiver) => {
                    inputs.has_receiver = true;
                    inputs.receiver = Some(receiver.self_token.span);
                }
                FnArg::Typed(typed) => {
                    let whole_arg = matches!(&*typed.pat, Pat::Ident(p) if p.subpat.is_none());
                    let cfgs = cfg_attrs(&typed.attrs);
                    let mut names = Vec::new();
                    collect(&typed.pat, &mut names);
                    inputs
                        .bindings
                        .extend(names.into_iter().map(|ident| Binding {
                            ident,
                            arg_ty: (*typed.ty).clone(),
                            whole_arg,
                            cfgs: cfgs.clone(),
                        }));
                }
            }
        }
        inputs
    }

    pub(crate) fn find(&self, name: &str) -> Option<&Binding> {
        self.bindings.iter().find(|b| b.ident == name)
    }

    /// Every placeholder of `template` must name an argument binding (or `self` in a method).
    ///
    /// A placeholder names its binding by text, so each root takes the binding's name resolution
    /// (keeping its own location, the literal): in a `macro_rules!`, a template written by the
    /// macro may name an argument whose name its caller gave (`fn $name($arg: u64)`), and would
    /// not see it with the hygiene of the literal.
    pub(crate) fn check_placeholders(
        &self,
        template: &mut Template,
        fn_name: &str,
        errors: &Errors,
    ) {
        let lit = template.lit.span();
        for placeholder in template.placeholders_mut() {
            let root = placeholder.root_name();
            let resolution = if root == "self" {
                self.receiver
            } else {
                self.find(&root).map(|b| b.ident.span())
            };
            if let Some(resolution) = resolution {
                placeholder.root.set_span(resolution.located_at(lit));
                continue;
            }
            let names = self.names();
            let could_name = if names.is_empty() {
                format!("`{fn_name}` takes no arguments")
            } else {
                format!("it can name {}", quoted_list(&names))
            };
            let what = if root == "self" {
                format!("`{fn_name}` takes no `self`")
            } else {
                format!("`{root}` is not an argument of `{fn_name}`")
            };
            errors.at(
                lit,
                format!("placeholder `{}`: {what}; {could_name}", placeholder.text),
            );
        }
    }

    /// The names a template placeholder may start with, for messages: `id`, `name`, `self`.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.bindings.iter().map(|b| b.ident.to_string()).collect();
        if self.has_receiver {
            names.push("self".to_owned());
        }
        names
    }
}

/// The `#[cfg(..)]` attributes among `attrs` (of a function or an argument), to put on generated
/// code that must exist exactly when the item it reads does.
pub(crate) fn cfg_attrs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .cloned()
        .collect()
}

/// `` `a`, `b` `` for messages.
pub(crate) fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The names bound by `pat`, in order.
fn collect(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            out.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                collect(sub, out);
            }
        }
        Pat::Tuple(p) => p.elems.iter().for_each(|p| collect(p, out)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|p| collect(p, out)),
        Pat::Slice(p) => p.elems.iter().for_each(|p| collect(p, out)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| collect(&f.pat, out)),
        Pat::Reference(p) => collect(&p.pat, out),
        Pat::Paren(p) => collect(&p.pat, out),
        Pat::Type(p) => collect(&p.pat, out),
        // Every alternative binds the same names.
        Pat::Or(p) => {
            if let Some(first) = p.cases.first() {
                collect(first, out);
            }
        }
        // `_`, `..`, literals, ranges, paths, macros: nothing bound that we can see.
        _ => {}
    }
}

/// Whether `ty` contains `impl Trait` (an argument of an anonymous generic type).
pub(crate) fn has_impl_trait(ty: &Type) -> bool {
    struct Finder(bool);
    impl Visit<'_> for Finder {
        fn visit_type_impl_trait(&mut self, _: &syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    finder.0
}

/// Whether the signature names `Self` anywhere (so it is inside an `impl` or a trait).
pub(crate) fn mentions_self_type(sig: &Signature) -> bool {
    struct Finder(bool);
    impl Visit<'_> for Finder {
        fn visit_ident(&mut self, ident: &Ident) {
            if ident == "Self" {
                self.0 = true;
            }
        }
    }
    let mut finder = Finder(false);
    finder.visit_signature(sig);
    finder.0
}

/// Whether a return type is, as written, a future: `impl Future<..>`, `Pin<Box<dyn Future<..>>>`
/// (what `#[async_trait]` makes of an `async fn`), or `BoxFuture<..>`. The function's body only
/// makes it; the work it stands for runs later, when the caller awaits it.
pub(crate) fn is_future(ty: &Type) -> bool {
    let future_bound = |bounds: &syn::punctuated::Punctuated<syn::TypeParamBound, _>| {
        bounds.iter().any(|bound| {
            matches!(bound, syn::TypeParamBound::Trait(t)
                if t.path.segments.last().is_some_and(|s| s.ident == "Future" || s.ident == "IntoFuture"))
        })
    };
    match ty {
        Type::Paren(p) => is_future(&p.elem),
        Type::Group(g) => is_future(&g.elem),
        Type::ImplTrait(t) => future_bound(&t.bounds),
        Type::TraitObject(t) => future_bound(&t.bounds),
        Type::Path(p) => {
            let Some(last) = p.path.segments.last() else {
                return false;
            };
            if last.ident == "BoxFuture" || last.ident == "LocalBoxFuture" {
                return true;
            }
            // `Pin<Box<..>>`, `Box<..>`: a future behind a pointer is a future.
            let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
                return false;
            };
            (last.ident == "Pin" || last.ident == "Box")
                && args
                    .args
                    .iter()
                    .any(|arg| matches!(arg, syn::GenericArgument::Type(inner) if is_future(inner)))
        }
        _ => false,
    }
}

/// The names bound by an argument pattern, in order (`Path(id)` binds `id`; `_` binds nothing).
pub(crate) fn bound_names(pat: &Pat) -> Vec<Ident> {
    let mut names = Vec::new();
    collect(pat, &mut names);
    names
}

/// The crates (and their modules, as imported: `extract::State`) whose types a path may name for
/// it to be read as an extractor. A path through anything else (`crate::Request`,
/// `models::State`) names a type of the user's own, whatever it is called, and is an ordinary
/// argument: that is also the way out offered for a type that shares an extractor's name.
const EXTRACTOR_PATH_ROOTS: &[&str] = &[
    "axum",
    "axum_extra",
    "axum_core",
    "http",
    "headers",
    "tower_cookies",
    "extract",
    "request",
];

/// `ty` through parentheses and groups, as a path that could name an extractor: no `qself`, and
/// either one segment (an imported name) or a path whose first segment is one of
/// [`EXTRACTOR_PATH_ROOTS`]. Not through references: no extractor is a reference, so `&State` is
/// the user's own type.
fn extractor_path(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Paren(p) => extractor_path(&p.elem),
        Type::Group(g) => extractor_path(&g.elem),
        Type::Path(p) if p.qself.is_none() => {
            let segments = &p.path.segments;
            let root = segments.first()?;
            let by_crate =
                segments.len() > 1 && EXTRACTOR_PATH_ROOTS.iter().any(|r| root.ident == r);
            (segments.len() == 1 && p.path.leading_colon.is_none() || by_crate)
                .then(|| segments.last())
                .flatten()
        }
        _ => None,
    }
}

/// Whether a path segment has exactly one generic argument, a type: `State<S>`, `Extension<T>`.
fn one_type_argument(segment: &syn::PathSegment) -> bool {
    match &segment.arguments {
        syn::PathArguments::AngleBracketed(a) => {
            a.args.len() == 1 && matches!(a.args.first(), Some(syn::GenericArgument::Type(_)))
        }
        _ => false,
    }
}

/// axum's `State<S>`: shared application state, never part of a default key.
///
/// Only that shape: axum's extractor always has its one type argument, so a `State` without one
/// (a user's `enum State`), behind a reference (`&State`) or under a path of the user's own
/// (`us::State`) is an ordinary argument and goes in the key; leaving it out would serve one
/// state's value for every other.
pub(crate) fn is_state_extractor(ty: &Type) -> bool {
    extractor_path(ty).is_some_and(|s| s.ident == "State" && one_type_argument(s))
}

/// Extractors that carry per-user input (credentials, cookies, headers, the whole request) which a
/// default key does not cover; caching a handler that reads them can serve one user's response to
/// another. Those marked `true` are generic in axum (`Extension<T>`), so a bare name is not them.
pub(crate) const PER_USER_EXTRACTORS: &[(&str, bool)] = &[
    ("HeaderMap", false),
    ("TypedHeader", true),
    ("CookieJar", false),
    ("SignedCookieJar", false),
    ("PrivateCookieJar", false),
    ("Cookies", false),
    ("Extension", true),
    ("Request", false),
    ("Parts", false),
];

/// The extractor inside `Option<T>` or `Result<T, E>` (bare, or through `std`/`core`'s path): how
/// axum extracts `T` without rejecting the request when it is missing.
fn optional_extraction(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    if p.qself.is_some() {
        return None;
    }
    let segments = &p.path.segments;
    let last = segments.last()?;
    let through_std = segments.len() == 1
        || segments.len() == 3 && ["std", "core"].iter().any(|r| segments[0].ident == r);
    if !through_std || !(last.ident == "Option" || last.ident == "Result") {
        return None;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(a) => match a.args.first()? {
            syn::GenericArgument::Type(inner) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}

/// The per-user extractor `ty` is, if any (see [`PER_USER_EXTRACTORS`]), through references (a
/// helper that takes `&HeaderMap` reads per-user input as much as a handler does) and through the
/// `Option<..>` and `Result<.., _>` that axum extracts optionally (`Option<Extension<User>>` for
/// an optional login reads the user as much as `Extension<User>` does).
pub(crate) fn per_user_extractor(ty: &Type) -> Option<&Ident> {
    let ty = match ty {
        Type::Reference(r) => return per_user_extractor(&r.elem),
        ty => ty,
    };
    if let Some(inner) = optional_extraction(ty) {
        return per_user_extractor(inner);
    }
    let segment = extractor_path(ty)?;
    PER_USER_EXTRACTORS
        .iter()
        .any(|(name, generic)| segment.ident == name && (!generic || one_type_argument(segment)))
        .then_some(&segment.ident)
}
