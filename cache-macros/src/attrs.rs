//! Recognising this crate's attributes among a function's other attributes, for the attributes
//! that stack: `#[cached]` consumes a `#[cache_if]` below it, `#[cache_if]` hands itself to a
//! `#[cached]` below it, and `#[invalidates]` refuses to share a function with `#[cached]`.

use syn::{Attribute, Path};

/// Whether `path` names our attribute `name`: `name`, `cache_core::name`, `::cache_core::name`,
/// or `<anything>::cache_core::name` (a re-export of the crate).
pub(crate) fn is_ours(path: &Path, name: &str) -> bool {
    let segments: Vec<_> = path.segments.iter().collect();
    let Some(last) = segments.last() else {
        return false;
    };
    if last.ident != name || !last.arguments.is_none() {
        return false;
    }
    match segments.len() {
        1 => path.leading_colon.is_none(),
        n => segments[n - 2].ident == "cache_core",
    }
}

/// The index of the first of `attrs` that is our attribute `name`.
pub(crate) fn position(attrs: &[Attribute], name: &str) -> Option<usize> {
    attrs.iter().position(|a| is_ours(a.path(), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognised_paths() {
        let yes = |s: &str| is_ours(&syn::parse_str(s).unwrap(), "cached");
        assert!(yes("cached"));
        assert!(yes("cache_core::cached"));
        assert!(yes("::cache_core::cached"));
        assert!(yes("my_framework::cache_core::cached"));
        assert!(!yes("::cached"));
        assert!(!yes("other::cached"));
        assert!(!yes("cached_thing"));
        assert!(!yes("cache_core::cache_if"));
    }
}
