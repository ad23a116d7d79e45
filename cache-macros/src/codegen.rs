//! Code-writing helpers shared by the attributes: key/tag/pattern rendering into a `KeyBuf`, the
//! spans of generated paths, and the "fake return edge" that keeps a wrapped body's type inference.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::visit_mut::VisitMut;
use syn::{Ident, Path, Type};

use crate::key_template::{Format, Part, Placeholder, Template};

/// How generated code reaches an argument binding.
///
/// In the function itself a binding `id` is reached as `id`. In the key companion of a
/// `#[cached]` function (see `cached/companion.rs`) the arguments arrive borrowed, so the same
/// value is `*id` there (or `**id`, or `id` for a `ref` binding); the companion records which, so
/// that every `KeyBuf` method, check and field access sees the same type as in the function, and
/// a mistake in a template is one error, not one per copy.
pub(crate) enum Access<'a> {
    /// The binding itself.
    Owned,
    /// Per binding name, the derefs that reach the function's value (`*`, `**`, nothing).
    Prefixed(&'a HashMap<String, TokenStream>),
}

impl Access<'_> {
    /// An expression of the binding's type in the function, to take a field of or borrow.
    fn place(&self, root: &Ident, span: Span) -> TokenStream {
        let prefix = match self {
            Access::Owned => None,
            Access::Prefixed(map) => map.get(&root.to_string()).filter(|p| !p.is_empty()),
        };
        match prefix {
            Some(prefix) => {
                let prefix = respan(prefix, span);
                let inner = quote_spanned! {span=> #prefix #root };
                group(inner, span).into_token_stream()
            }
            None => root.to_token_stream(),
        }
    }

    /// `&binding`, of type `&T` for a binding of type `T` in the function.
    pub(crate) fn reference(&self, root: &Ident, span: Span) -> TokenStream {
        let place = self.place(root, span);
        quote_spanned! {span=> &#place }
    }
}

/// `buf.lit("user:"); buf.part(&id);` for each part of a key or tag `template`.
///
/// A literal followed by a plain placeholder becomes one `lit_part_or_int` call, so an integer
/// after a short literal (`user:{id}`) is written with the literal in a single store.
pub(crate) fn render_template(
    c: &Path,
    template: &Template,
    buf: &TokenStream,
    access: &Access<'_>,
) -> TokenStream {
    let mut out = TokenStream::new();
    let mut parts = template.parts.iter().peekable();
    let span = template.lit.span();
    while let Some(part) = parts.next() {
        match part {
            Part::Lit(text) => match parts.peek() {
                Some(Part::Placeholder(p)) if p.format == Format::Display => {
                    parts.next();
                    let value = placeholder_value(template, p, access);
                    let int = int_probe(c, span, &value);
                    let string = str_probe(c, span, &value);
                    out.extend(
                        quote_spanned! {span=> #buf.lit_part_or_int(#text, #value, #int, #string); },
                    );
                }
                _ => out.extend(quote! { #buf.lit(#text); }),
            },
            Part::Placeholder(p) => {
                let value = placeholder_value(template, p, access);
                out.extend(match p.format {
                    Format::Display => {
                        let int = int_probe(c, span, &value);
                        let string = str_probe(c, span, &value);
                        quote_spanned! {span=> #buf.part_or_int(#value, #int, #string); }
                    }
                    Format::Hash => quote! { #buf.part_hashed(#value); },
                    Format::Lower => quote! { #buf.part_lower(#value); },
                    Format::Upper => quote! { #buf.part_upper(#value); },
                });
            }
        }
    }
    out
}

/// Whether a plain placeholder's value is a primitive integer, as an `Option<Int>` expression:
/// `IntProbe` finds integers by autoref specialization, with no bound that could add an error
/// of its own, so they skip the formatting machinery.
pub(crate) fn int_probe(c: &Path, span: Span, value: &TokenStream) -> TokenStream {
    let c = respan(c, span);
    quote_spanned! {span=> {
        #[allow(unused_imports)]
        use #c::__private::{IntViaDisplay as _, IntViaPrimitive as _};
        (&&#c::__private::IntProbe(#value)).int()
    }}
}

/// Whether a plain placeholder's value is a string (`str`, `String`, `&str`, ...), as an
/// `Option<&str>` expression, found by `StrProbe` the way `int_probe` finds integers: such values
/// are escaped straight from the string rather than through `Display`.
fn str_probe(c: &Path, span: Span, value: &TokenStream) -> TokenStream {
    let c = respan(c, span);
    quote_spanned! {span=> {
        #[allow(unused_imports)]
        use #c::__private::{StrViaDisplay as _, StrViaStr as _};
        (&&#c::__private::StrProbe(#value)).str()
    }}
}

/// `buf.lit("search:*"); buf.pattern_part(&q);`: a glob whose literal parts are glob syntax as
/// written and whose argument values are escaped so they match only themselves.
pub(crate) fn render_pattern(c: &Path, template: &Template, buf: &TokenStream) -> TokenStream {
    template
        .parts
        .iter()
        .map(|part| match part {
            Part::Lit(text) => quote! { #buf.lit(#text); },
            Part::Placeholder(p) => {
                let value = placeholder_value(template, p, &Access::Owned);
                let span = template.lit.span();
                let c = respan(c, span);
                match p.format {
                    Format::Display => quote_spanned! {span=> #buf.pattern_part(#value); },
                    // 16 hex digits: nothing a glob could read as a wildcard.
                    Format::Hash => quote_spanned! {span=> #buf.part_hashed(#value); },
                    Format::Lower => quote_spanned! {span=>
                        #c::__private::pattern_part_lower(&mut #buf, #value);
                    },
                    Format::Upper => quote_spanned! {span=>
                        #c::__private::pattern_part_upper(&mut #buf, #value);
                    },
                }
            }
        })
        .collect()
}

/// `&root.field.sub`, spanned on the template literal.
pub(crate) fn placeholder_value(
    template: &Template,
    p: &Placeholder,
    access: &Access<'_>,
) -> TokenStream {
    let fields = &p.fields;
    let span = template.lit.span();
    let place = access.place(&p.root, span);
    quote_spanned! {span=> &#place #(.#fields)* }
}

/// A `Display` check per placeholder, spanned on its literal.
pub(crate) fn template_checks(c: &Path, template: &Template, access: &Access<'_>) -> TokenStream {
    let span = template.lit.span();
    let c = respan(c, span);
    template
        .placeholders()
        .map(|p| {
            let value = placeholder_value(template, p, access);
            quote_spanned! {span=> #c::__private::assert_key_part(#value); }
        })
        .collect()
}

/// How an expansion names cache-core: `::cache_core`, or the path of a `crate = "..."` option.
///
/// A named path may name nothing (a typo, a re-export that is not there). Every generated use of
/// it then failed on its own, each reported at another token of the function (the function's
/// name, its argument and return types) under the same message. So a named path is imported once
/// at the top of each body the expansion writes (`use <path> as __cache_crate;`, spanned at the
/// path) and reached through that name: the `use` is the one error, and the compiler says
/// nothing of the uses through it. The default path is written out as it always was (it names
/// nothing only in a program without the `cache_core` dependency, where every other error says
/// so too), so the expansions of the common case do not change.
pub(crate) struct CratePath {
    path: Path,
    named: bool,
}

impl CratePath {
    /// The path of a `crate = "..."` option, or `::cache_core` without one.
    pub(crate) fn new(option: Option<Path>) -> Self {
        match option {
            Some(path) => CratePath { path, named: true },
            None => CratePath {
                path: syn::parse_quote!(::cache_core),
                named: false,
            },
        }
    }

    /// The path as written, for what lies outside any body (a signature).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// What a body the expansion writes names the crate by.
    pub(crate) fn in_body(&self) -> Path {
        match self.named {
            true => Ident::new("__cache_crate", Span::call_site()).into(),
            false => self.path.clone(),
        }
    }

    /// The `use` that a body must start with for [`in_body`](Self::in_body) to resolve.
    pub(crate) fn import(&self) -> TokenStream {
        if !self.named {
            return TokenStream::new();
        }
        let path = &self.path;
        let span = syn::spanned::Spanned::span(path);
        // At the path too, or the compiler reports the import at the whole attribute. Items are
        // found by name whatever their span, so the body's uses still reach it.
        let alias = Ident::new("__cache_crate", span);
        quote_spanned! {span=>
            #[allow(unused_imports)]
            use #path as #alias;
        }
    }
}

/// A local variable of an expansion (`__k`, `__cache_value`), spanned at the mixed site: it
/// neither sees nor shadows a binding of the user's code of the same name, so an argument called
/// `__k` is still the argument wherever the expansion names it (with the user's own span).
pub(crate) fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// `tokens` with every span set to `span` (for a path the user did not write, so errors spanned
/// at the user's code do not stretch back to the attribute).
pub(crate) fn respan(tokens: &impl ToTokens, span: Span) -> TokenStream {
    tokens
        .to_token_stream()
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(&g.stream(), span));
                group.set_span(span);
                tt = TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// `( tokens )` with the parentheses spanned at `span`.
pub(crate) fn group(tokens: TokenStream, span: Span) -> proc_macro2::Group {
    let mut group = proc_macro2::Group::new(proc_macro2::Delimiter::Parenthesis, tokens);
    group.set_span(span);
    group
}

/// The spans of the first and last tokens, for an expression that underlines all of them.
pub(crate) fn first_last(tokens: TokenStream) -> (Span, Span) {
    let mut iter = tokens.into_iter();
    let first = iter.next().map_or_else(Span::call_site, |t| t.span());
    let last = iter.last().map_or(first, |t| t.span());
    (first, last)
}

/// `ty` with every `impl Trait` replaced by `_`, for a `let` or closure annotation (where
/// `impl Trait` is not allowed) that should still pin the rest of the type.
pub(crate) fn erase_impl_trait(ty: &Type) -> Type {
    struct Eraser;
    impl VisitMut for Eraser {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(it) = ty {
                *ty = Type::Infer(syn::TypeInfer {
                    underscore_token: syn::Token![_](it.impl_token.span),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    Eraser.visit_type_mut(&mut ty);
    ty
}

/// The "fake return edge" of tracing-attributes, first in a wrapped `async` body: pins the async
/// block's output type to the declared return type, so `?` and `return` in the body infer as
/// they did in the fn, and a body of the wrong type is reported at its own expression.
pub(crate) fn fake_return(ret: &Type, span: Span) -> TokenStream {
    let fake = local("__cache_fake_return");
    quote_spanned! {span=>
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::let_with_type_underscore,
            clippy::needless_return,
            clippy::unreachable
        )]
        if false {
            let #fake: #ret = loop {};
            return #fake;
        }
    }
}
