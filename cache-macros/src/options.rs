//! Parsing helpers shared by every attribute's options: the comma-separated list with recovery,
//! "set once", `name = value`, unknown-option messages with a "did you mean", string literals and
//! arrays of templates.

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, ExprLit, Ident, Lit, LitBool, LitStr, Token};

use crate::errors::Errors;
use crate::key_template::Template;

/// Parses `tokens` as a comma-separated list of `parse_one`, reporting every malformed element
/// into `errors` and skipping it up to the next comma, so one build lists every mistake.
pub(crate) fn parse_list<T>(
    tokens: TokenStream,
    errors: &Errors,
    parse_one: impl Fn(ParseStream<'_>) -> syn::Result<T>,
) -> Vec<T> {
    // Parsed as the contents of a group spanned at the last token: syn reports an option cut
    // short (`key = id +`) at the end of its input, which is that group's close, where at the top
    // level it would be the call site, the whole attribute (or the `#[cached]` that a
    // `#[cache_if]` handed its arguments to).
    let end = tokens
        .clone()
        .into_iter()
        .last()
        .map_or_else(Span::call_site, |tt| tt.span());
    let mut group = Group::new(Delimiter::Parenthesis, tokens);
    group.set_span(end);
    let parser = |outer: ParseStream<'_>| {
        let input;
        syn::parenthesized!(input in outer);
        let input = &input;
        let mut items = Vec::new();
        while !input.is_empty() {
            match parse_one(input) {
                Ok(item) => items.push(item),
                Err(e) => {
                    errors.push(e);
                    skip_to_comma(input);
                }
            }
            if input.is_empty() {
                break;
            }
            if !input.peek(Token![,]) {
                errors.push(input.error("expected `,` between options"));
                skip_to_comma(input);
            }
            if input.peek(Token![,]) {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(items)
    };
    match parser.parse2(group.into_token_stream()) {
        Ok(items) => items,
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    }
}

/// Stores `value` unless the option was already given; a repeat is an error at its keyword.
pub(crate) fn set_once<T>(
    slot: &mut Option<T>,
    name: &str,
    keyword: Span,
    value: T,
    errors: &Errors,
) {
    if slot.is_some() {
        errors.at(
            keyword,
            format!("duplicate `{name}` option; give each option once"),
        );
    } else {
        *slot = Some(value);
    }
}

/// Moves past a malformed option, up to (not over) the next top-level comma.
pub(crate) fn skip_to_comma(input: ParseStream<'_>) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if matches!(&tt, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    });
}

/// "unknown option `x`; expected one of ..." at the option's name, with a "did you mean" hint.
/// `other` describes what else may stand there (for `#[invalidates]`'s function calls).
pub(crate) fn unknown_option(input: ParseStream<'_>, options: &[&str], other: &str) -> syn::Error {
    let expected = options
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match input.fork().call(Ident::parse_any) {
        Ok(ident) => {
            let name = ident.to_string();
            let hint = options
                .iter()
                .find(|o| edit_distance(o, &name) <= 2)
                .map(|o| format!("; did you mean `{o}`?"))
                .unwrap_or_default();
            syn::Error::new(
                ident.span(),
                format!("unknown option `{name}`; expected one of {expected}{other}{hint}"),
            )
        }
        Err(_) => input.error(format!("expected an option: one of {expected}{other}")),
    }
}

/// Levenshtein distance, for "did you mean" hints on short option names.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// `= <expr>` after an option's keyword.
pub(crate) fn value_after_eq(
    input: ParseStream<'_>,
    keyword: Span,
    usage: &str,
) -> syn::Result<Expr> {
    let Some(eq) = input.parse::<Option<Token![=]>>()? else {
        return Err(syn::Error::new(
            keyword,
            format!("expected a value for this option: write {usage}"),
        ));
    };
    if input.is_empty() || input.peek(Token![,]) {
        return Err(syn::Error::new(
            eq.span,
            format!("expected a value after `=`: write {usage}"),
        ));
    }
    input.parse().map(ungroup)
}

/// `value` out of the invisible groups that a `macro_rules!` puts around the fragments it passes
/// on (`ttl = $ttl` with `$ttl:expr`): read as written, `60` is an integer and `"user:{id}"` a
/// template, not expressions to use whole.
pub(crate) fn ungroup(value: Expr) -> Expr {
    match value {
        Expr::Group(group) => ungroup(*group.expr),
        value => value,
    }
}

/// The value as a string literal, or `message` at it.
pub(crate) fn expect_str(value: Expr, message: &str) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s),
        other => Err(syn::Error::new_spanned(other, message)),
    }
}

/// The value as `true` or `false`, or an error naming the option.
pub(crate) fn expect_bool(value: Expr, option: &str) -> syn::Result<LitBool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Ok(b),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected `true` or `false`, as in `{option} = true`"),
        )),
    }
}

/// A non-empty cache name, as in `cache = "users"`.
pub(crate) fn cache_name(value: Expr, empty_hint: &str) -> syn::Result<LitStr> {
    let name = expect_str(
        value,
        "expected the cache's name as a string literal, as in `cache = \"users\"`",
    )?;
    if name.value().is_empty() {
        return Err(syn::Error::new(
            name.span(),
            format!("the cache name is empty; name a cache, as in `cache = \"users\"`{empty_hint}"),
        ));
    }
    Ok(name)
}

/// `crate = "::cache_core"`.
pub(crate) fn crate_path(value: Expr) -> syn::Result<syn::Path> {
    let lit = expect_str(
        value,
        "expected a path as a string literal, as in `crate = \"::cache_core\"`",
    )?;
    lit.parse::<syn::Path>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!(
                "`{}` is not a path; expected the path to `cache_core`, as in `crate = \"::cache_core\"`",
                lit.value()
            ),
        )
    })
}

/// `["a:{x}", "b:{y}"]`: an array of `what` templates (`what` is "tag", "key", "pattern"), each
/// reported on its own. `option` and `example` make the messages: `tags = ["user:{id}"]`.
pub(crate) fn parse_templates(
    value: Expr,
    what: &str,
    option: &str,
    example: &str,
) -> syn::Result<Vec<Template>> {
    let Expr::Array(array) = value else {
        let hint = if matches!(
            &value,
            Expr::Lit(ExprLit {
                lit: Lit::Str(_),
                ..
            })
        ) {
            "; put the template in brackets"
        } else {
            ""
        };
        return Err(syn::Error::new_spanned(
            value,
            format!(
                "expected an array of {what} templates, as in `{option} = [\"{example}\"]`{hint}"
            ),
        ));
    };
    let mut templates = Vec::new();
    let mut error: Option<syn::Error> = None;
    let mut fail = |e: syn::Error| match &mut error {
        Some(first) => first.combine(e),
        None => error = Some(e),
    };
    for elem in array.elems {
        match ungroup(elem) {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => match Template::parse(&lit, what) {
                Ok(t) => templates.push(t),
                Err(e) => fail(e),
            },
            other => fail(syn::Error::new_spanned(
                other,
                format!("expected a {what} template as a string literal, as in `\"{example}\"`"),
            )),
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(templates),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("ttl", "tll"), 1);
        assert_eq!(edit_distance("cache", "caches"), 1);
        assert_eq!(edit_distance("key", "name"), 4);
    }
}
