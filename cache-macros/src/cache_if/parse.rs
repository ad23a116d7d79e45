//! `#[cache_if(...)]`'s arguments: a condition over the arguments, checked before the lookup, and
//! `result = <predicate>`, asked after the body whether to store its value. Either or both.

use proc_macro2::{Span, TokenStream};
use syn::parse::ParseStream;
use syn::{Expr, ExprAssign, ExprPath, Ident};

use crate::errors::Errors;
use crate::options::{edit_distance, parse_list, set_once};

/// A parsed `#[cache_if]`.
pub(crate) struct Condition {
    /// `#[cache_if(id > 0)]`: when false the cache is not used at all.
    pub(crate) when: Option<Expr>,
    /// `#[cache_if(result = |r| ...)]`: a value is stored only when this accepts it.
    pub(crate) result: Option<Expr>,
}

const USAGE: &str = "a condition over the arguments, as in `#[cache_if(id > 0)]`, and/or a predicate over the return value, as in `#[cache_if(result = |users| !users.is_empty())]`";

/// One argument as written.
enum Item {
    When(Expr),
    Result(Ident, Expr),
}

/// Parses the arguments of one `#[cache_if]` written at `span`, reporting into `errors`.
pub(crate) fn parse_condition(tokens: TokenStream, span: Span, errors: &Errors) -> Condition {
    if tokens.is_empty() {
        errors.at(span, format!("`#[cache_if]` needs {USAGE}"));
    }
    let items = parse_list(tokens, errors, Item::parse);
    let mut condition = Condition {
        when: None,
        result: None,
    };
    let mut when_given = false;
    for item in items {
        match item {
            Item::When(expr) => {
                if when_given {
                    errors.spanned_by(
                        &expr,
                        "`#[cache_if]` takes one condition; combine conditions with `&&` or `||`",
                    );
                } else {
                    when_given = true;
                    condition.when = Some(expr);
                }
            }
            Item::Result(k, expr) => {
                set_once(&mut condition.result, "result", k.span(), expr, errors);
            }
        }
    }
    condition
}

impl Item {
    fn parse(input: ParseStream<'_>) -> syn::Result<Item> {
        let expr: Expr = input.parse()?;
        // `name = value` is an assignment, never a `bool`: it is an option.
        if let Expr::Assign(ExprAssign { left, right, .. }) = &expr
            && let Expr::Path(ExprPath {
                path, qself: None, ..
            }) = &**left
            && let Some(ident) = path.get_ident()
        {
            if ident == "result" {
                return Ok(Item::Result(ident.clone(), (**right).clone()));
            }
            let name = ident.to_string();
            let hint = if edit_distance(&name, "result") <= 2 {
                "; did you mean `result`?"
            } else {
                ""
            };
            return Err(syn::Error::new(
                ident.span(),
                format!(
                    "unknown option `{name}`; `#[cache_if]` takes {USAGE} (compare with `==`){hint}"
                ),
            ));
        }
        Ok(Item::When(expr))
    }
}
