//! `#[cached]`: parse the options (`parse.rs`), check them and the function (`check.rs`), write
//! the cached function (`expand.rs`). On any error the function is emitted unchanged next to the
//! errors, so its callers still compile and the IDE keeps working.

mod check;
mod expand;
mod parse;

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ItemFn;

use crate::errors::Errors;

pub(crate) fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let errors = Errors::new();
    let args = parse::parse_args(args, &errors);
    let plan = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(func) => check::check(args, &func, &errors).map(|plan| (plan, func)),
        Err(_) => {
            not_a_function(&item, &errors);
            None
        }
    };
    match (errors.finish(), plan) {
        (Ok(()), Some((plan, func))) => expand::expand(&plan, func),
        (result, _) => {
            let mut out = item;
            if let Err(e) = result {
                out.extend(e.into_compile_error());
            }
            out
        }
    }
}

fn not_a_function(item: &TokenStream, errors: &Errors) {
    if let Ok(decl) = syn::parse2::<syn::TraitItemFn>(item.clone()) {
        if decl.default.is_none() {
            errors.spanned_by(
                &decl.sig,
                "`#[cached]` needs a function with a body; put it on the trait's implementations, or give the method a default body",
            );
            return;
        }
    }
    errors.at(
        first_token_after_attributes(item),
        "`#[cached]` can only be applied to functions",
    );
}

/// The item's first token after its outer attributes (`pub`, `struct`, ...).
fn first_token_after_attributes(item: &TokenStream) -> Span {
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
