//! `#[invalidates]`: parse the arguments (`parse.rs`), check them against the function
//! (`check.rs`), write the invalidating function (`expand.rs`). On any error the function is
//! emitted unchanged next to the errors.
//!
//! The type-checked form, `#[invalidates(get_user(id))]`, calls the key companion that
//! `#[cached]` writes next to `get_user` (see `cached/companion.rs`).

mod check;
mod expand;
mod parse;

use proc_macro2::TokenStream;
use syn::ItemFn;

use crate::errors::Errors;

pub(crate) fn invalidates(args: TokenStream, item: TokenStream) -> TokenStream {
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
    if let Ok(decl) = syn::parse2::<syn::TraitItemFn>(item.clone())
        && decl.default.is_none()
    {
        errors.spanned_by(
                &decl.sig,
                "`#[invalidates]` needs a function with a body; put it on the trait's implementations, or give the method a default body",
            );
        return;
    }
    errors.at(
        crate::cached::first_token_after_attributes(item),
        "`#[invalidates]` can only be applied to functions",
    );
}
