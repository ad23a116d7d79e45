//! The rules that need the function: which options go together, what a placeholder may name,
//! and where `#[invalidates]` may be. Turns [`Args`] into the [`Plan`] that `expand.rs` writes out.

use syn::{ItemFn, ReturnType, Type};

use super::parse::{Args, KeySpec, Target};
use crate::attrs;
use crate::codegen::CratePath;
use crate::errors::Errors;
use crate::signature::{Inputs, is_future};

/// Everything the expansion needs, checked.
pub(crate) struct Plan {
    pub(crate) krate: CratePath,
    /// The cache of `key`, `keys`, `pattern`, `patterns` and `all`.
    pub(crate) cache: String,
    pub(crate) targets: Vec<Target>,
    /// `all = true`: empty `cache`.
    pub(crate) all: bool,
    /// `before = true`: invalidate before the body runs, whatever it returns.
    pub(crate) before: bool,
}

const NOTHING: &str = "`#[invalidates]` needs something to invalidate: a key (`key = \"user:{id}\"`, `keys = [..]`), a glob (`pattern = \"search:*\"`, `patterns = [..]`), tags (`tags = [\"user:{id}\"]`), a whole cache (`cache = \"users\", all = true`), or a `#[cached]` function called with its arguments (`get_user(id)`)";

/// Checks `args` against `item`. `None` if anything was wrong (all of it is in `errors`).
pub(crate) fn check(mut args: Args, item: &ItemFn, errors: &Errors) -> Option<Plan> {
    let sig = &item.sig;
    if let Some(constness) = &sig.constness {
        errors.spanned_by(
            constness,
            "`#[invalidates]` cannot be applied to a `const fn`: caches are invalidated at run time; remove `const` or `#[invalidates]`",
        );
    }
    if sig.asyncness.is_none()
        && let ReturnType::Type(_, ty) = &sig.output
        && is_future(ty)
    {
        errors.spanned_by(
            ty,
            format!(
                "`#[invalidates]` cannot be applied to a function that returns a future: the entries would be removed when `{}` makes the future, before it runs and whether or not it succeeds; make it an `async fn` (in a `#[async_trait]` impl, put `#[invalidates]` on an `async fn` that the method awaits)",
                sig.ident
            ),
        );
    }
    let before = args.before.as_ref().is_some_and(|b| b.value);
    if !before
        && let ReturnType::Type(_, ty) = &sig.output
        && let Type::Never(_) = **ty
    {
        errors.spanned_by(
            ty,
            format!(
                "`#[invalidates]` removes the entries after `{}` returns successfully, and it never returns, so nothing would be removed; add `before = true` to remove them before the body runs",
                sig.ident
            ),
        );
    }
    if let Some(index) = attrs::position(&item.attrs, "cached") {
        errors.spanned_by(
            item.attrs[index].path(),
            format!(
                "`#[invalidates]` cannot be on a `#[cached]` function: on a hit `{}` does not run, so neither would its invalidations; put `#[invalidates]` on the function that changes the data",
                sig.ident
            ),
        );
    }

    let inputs = Inputs::of(sig);
    let fn_name = sig.ident.to_string();
    for target in &mut args.targets {
        match target {
            Target::Key(KeySpec::Template(t)) | Target::Pattern(t) | Target::Tag(t) => {
                inputs.check_placeholders(t, &fn_name, errors);
            }
            Target::Key(KeySpec::Expr(_)) | Target::Call(_) => {}
        }
    }

    let all = args.all.as_ref().is_some_and(|(_, b)| b.value);
    let uses_cache = args
        .targets
        .iter()
        .any(|t| matches!(t, Target::Key(_) | Target::Pattern(_)));
    match (&args.cache, &args.all) {
        (None, Some((all_span, b))) if b.value => errors.at(
            *all_span,
            "`all = true` needs the cache to empty: add `cache = \"users\"`; to empty every cache, call `cache_core::invalidate_all()`",
        ),
        (Some(cache), _) if !uses_cache && !all && errors.is_empty() => errors.spanned_by(
            cache,
            "`cache` has no effect here: it names the cache of `key`, `keys`, `pattern`, `patterns` and `all = true`; tags apply to every cache, and a `#[cached]` function names its own; remove `cache` or add what to remove from it",
        ),
        _ => {
            // Only when nothing else was wrong: a misspelt option is reported as that.
            if args.targets.is_empty() && !all && errors.is_empty() {
                errors.at(proc_macro2::Span::call_site(), NOTHING);
            }
        }
    }

    if !errors.is_empty() {
        return None;
    }
    Some(Plan {
        krate: CratePath::new(args.krate),
        cache: args
            .cache
            .map_or_else(|| "default".to_owned(), |lit| lit.value()),
        targets: args.targets,
        all,
        before,
    })
}
