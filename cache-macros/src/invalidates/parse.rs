//! `#[invalidates(...)]`'s arguments as typed values, each with its span: options
//! (`key = "user:{id}"`, `tags = [..]`, `all = true`, ...) and `#[cached]` functions called with
//! the arguments whose entries to remove (`get_user(id)`, `Self::get(self, id)`).
//!
//! Adding an option: a keyword in `kw`, a name in [`OPTIONS`], an arm in [`Item::parse`] and in
//! [`parse_args`].

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::{Expr, ExprLit, Ident, Lit, LitBool, LitStr, Path, Token};

use crate::errors::Errors;
use crate::key_template::Template;
use crate::options::{
    cache_name, crate_path, expect_bool, expect_str, parse_list, parse_templates, set_once,
    ungroup, unknown_option, value_after_eq,
};

mod kw {
    syn::custom_keyword!(key);
    syn::custom_keyword!(keys);
    syn::custom_keyword!(pattern);
    syn::custom_keyword!(patterns);
    syn::custom_keyword!(tags);
    syn::custom_keyword!(cache);
    syn::custom_keyword!(all);
    syn::custom_keyword!(before);
}

/// The options users write, as offered in messages.
const OPTIONS: &[&str] = &[
    "key", "keys", "pattern", "patterns", "tags", "cache", "all", "before", "crate",
];

const CALL_USAGE: &str = ", or a `#[cached]` function called with the arguments whose entry to remove, as in `get_user(id)`";

/// `#[invalidates]`'s arguments.
#[derive(Default)]
pub(crate) struct Args {
    /// What to remove, in the order written.
    pub(crate) targets: Vec<Target>,
    pub(crate) cache: Option<LitStr>,
    /// `all = true/false`, with the span of `all`.
    pub(crate) all: Option<(Span, LitBool)>,
    pub(crate) before: Option<LitBool>,
    pub(crate) krate: Option<Path>,
    /// Where `key`, `keys`, `pattern`, `patterns` were written, for "set once" and for messages
    /// about `cache`.
    pub(crate) keyed: Vec<Span>,
}

/// One thing to remove.
pub(crate) enum Target {
    /// `key = "user:{id}"` / `keys = [..]`: one key of the named cache.
    Key(KeySpec),
    /// `pattern = "search:{q}:*"` / `patterns = [..]`: the keys of the named cache matching a glob.
    Pattern(Template),
    /// `tags = [..]`: every entry with the tag, in every cache.
    Tag(Template),
    /// `get_user(id)`: the entry `get_user(id)` would read.
    Call(Box<CachedCall>),
}

/// A key template, or an expression whose `Display` output is the key (as in `#[cached]`).
pub(crate) enum KeySpec {
    Template(Template),
    Expr(Box<Expr>),
}

/// `get_user(id)`, `crate::users::get_user(id)`, `Self::get(self, id)` or `self.get(id)`.
pub(crate) struct CachedCall {
    pub(crate) callee: Callee,
    pub(crate) args: Vec<Expr>,
    /// The whole call as written, for spans.
    pub(crate) expr: Expr,
}

pub(crate) enum Callee {
    /// A path to the function (its last segment names it).
    Path(syn::ExprPath),
    /// `receiver.method::<..>(..)`.
    Method {
        receiver: Box<Expr>,
        method: Ident,
        turbofish: Option<syn::AngleBracketedGenericArguments>,
    },
}

enum Item {
    Key(kw::key, KeySpec),
    Keys(kw::keys, Vec<KeySpec>),
    Pattern(kw::pattern, Template),
    Patterns(kw::patterns, Vec<Template>),
    Tags(kw::tags, Vec<Template>),
    Cache(kw::cache, LitStr),
    All(kw::all, LitBool),
    Before(kw::before, LitBool),
    Crate(Token![crate], Path),
    Call(Box<CachedCall>),
}

/// Parses the attribute's arguments, reporting every error into `errors`.
pub(crate) fn parse_args(tokens: TokenStream, errors: &Errors) -> Args {
    let items = parse_list(tokens, errors, Item::parse);
    let mut args = Args::default();
    let mut once = SeenOnce::default();
    for item in items {
        match item {
            Item::Key(k, v) => {
                set_once(&mut once.key, "key", k.span, (), errors);
                args.keyed.push(k.span);
                args.targets.push(Target::Key(v));
            }
            Item::Keys(k, v) => {
                set_once(&mut once.keys, "keys", k.span, (), errors);
                args.keyed.push(k.span);
                args.targets.extend(v.into_iter().map(Target::Key));
            }
            Item::Pattern(k, v) => {
                set_once(&mut once.pattern, "pattern", k.span, (), errors);
                args.keyed.push(k.span);
                args.targets.push(Target::Pattern(v));
            }
            Item::Patterns(k, v) => {
                set_once(&mut once.patterns, "patterns", k.span, (), errors);
                args.keyed.push(k.span);
                args.targets.extend(v.into_iter().map(Target::Pattern));
            }
            Item::Tags(k, v) => {
                set_once(&mut once.tags, "tags", k.span, (), errors);
                args.targets.extend(v.into_iter().map(Target::Tag));
            }
            Item::Cache(k, v) => set_once(&mut args.cache, "cache", k.span, v, errors),
            Item::All(k, v) => set_once(&mut args.all, "all", k.span, (k.span, v), errors),
            Item::Before(k, v) => set_once(&mut args.before, "before", k.span, v, errors),
            Item::Crate(k, v) => set_once(&mut args.krate, "crate", k.span, v, errors),
            Item::Call(call) => args.targets.push(Target::Call(call)),
        }
    }
    args
}

/// Options that add targets, each allowed once.
#[derive(Default)]
struct SeenOnce {
    key: Option<()>,
    keys: Option<()>,
    pattern: Option<()>,
    patterns: Option<()>,
    tags: Option<()>,
}

impl Item {
    fn parse(input: ParseStream<'_>) -> syn::Result<Item> {
        let is_option = (input.peek(Ident::peek_any) || input.peek(Token![crate]))
            && (input.peek2(Token![=]) && !input.peek2(Token![==]) && !input.peek2(Token![=>])
                || option_without_value(input));
        if !is_option {
            return parse_call(input).map(|call| Item::Call(Box::new(call)));
        }
        if input.peek(kw::keys) {
            let k: kw::keys = input.parse()?;
            let value =
                value_after_eq(input, k.span, "`keys = [\"user:{id}\", \"profile:{id}\"]`")?;
            reject_empty_list(&value, "keys", "key", "\"user:{id}\"")?;
            Ok(Item::Keys(k, parse_keys(value)?))
        } else if input.peek(kw::key) {
            let k: kw::key = input.parse()?;
            let value = value_after_eq(
                input,
                k.span,
                "`key = \"user:{id}\"` or `key = <expression>`",
            )?;
            Ok(Item::Key(k, KeySpec::from_expr(value)?))
        } else if input.peek(kw::patterns) {
            let k: kw::patterns = input.parse()?;
            let value = value_after_eq(input, k.span, "`patterns = [\"search:*\"]`")?;
            reject_empty_list(&value, "patterns", "glob", "\"search:*\"")?;
            Ok(Item::Patterns(
                k,
                parse_templates(value, "pattern", "patterns", "search:*")?,
            ))
        } else if input.peek(kw::pattern) {
            let k: kw::pattern = input.parse()?;
            let value = value_after_eq(input, k.span, "`pattern = \"search:*\"`")?;
            let lit = expect_str(
                value,
                "expected a glob pattern as a string literal, as in `pattern = \"user:{id}:*\"`; several go in `patterns = [..]`",
            )?;
            Ok(Item::Pattern(k, Template::parse(&lit, "pattern")?))
        } else if input.peek(kw::tags) {
            let k: kw::tags = input.parse()?;
            let value = value_after_eq(input, k.span, "`tags = [\"user:{id}\"]`")?;
            reject_empty_list(&value, "tags", "tag", "\"user:{id}\"")?;
            Ok(Item::Tags(
                k,
                parse_templates(value, "tag", "tags", "user:{id}")?,
            ))
        } else if input.peek(kw::cache) {
            let k: kw::cache = input.parse()?;
            let value = value_after_eq(input, k.span, "`cache = \"users\"`")?;
            let name = cache_name(value, ", or leave the option out to use `\"default\"`")?;
            Ok(Item::Cache(k, name))
        } else if input.peek(kw::all) {
            let k: kw::all = input.parse()?;
            let value = value_after_eq(input, k.span, "`all = true`")?;
            Ok(Item::All(k, expect_bool(value, "all")?))
        } else if input.peek(kw::before) {
            let k: kw::before = input.parse()?;
            let value = value_after_eq(input, k.span, "`before = true`")?;
            Ok(Item::Before(k, expect_bool(value, "before")?))
        } else if input.peek(Token![crate]) {
            let k: Token![crate] = input.parse()?;
            let value = value_after_eq(input, k.span, "`crate = \"::cache_core\"`")?;
            Ok(Item::Crate(k, crate_path(value)?))
        } else {
            Err(unknown_option(input, OPTIONS, CALL_USAGE))
        }
    }
}

/// `keys = []`, `patterns = []`, `tags = []`: a list that removes nothing is a slip (a list left
/// to fill in, or filled by a macro that produced nothing), reported at the brackets rather than
/// left to the "nothing to invalidate" error on the whole attribute, or to silently do nothing
/// beside other targets.
fn reject_empty_list(value: &Expr, option: &str, what: &str, example: &str) -> syn::Result<()> {
    match value {
        Expr::Array(array) if array.elems.is_empty() => Err(syn::Error::new_spanned(
            array,
            format!(
                "`{option} = []` names no {what} to invalidate: list at least one, as in `{option} = [{example}]`, or remove the option"
            ),
        )),
        _ => Ok(()),
    }
}

/// An option's name with nothing after it (`all`, `key`): an option missing its value, which its
/// own arm reports as such, not a function named without its arguments.
fn option_without_value(input: ParseStream<'_>) -> bool {
    let fork = input.fork();
    fork.call(Ident::parse_any)
        .is_ok_and(|name| OPTIONS.iter().any(|o| name == o))
        && (fork.is_empty() || fork.peek(Token![,]))
}

impl KeySpec {
    fn from_expr(value: Expr) -> syn::Result<KeySpec> {
        match value {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => Ok(KeySpec::Template(Template::parse(&lit, "key")?)),
            other => Ok(KeySpec::Expr(Box::new(other))),
        }
    }
}

/// `keys = ["a:{x}", format!(..)]`: templates or expressions, as `key` takes.
fn parse_keys(value: Expr) -> syn::Result<Vec<KeySpec>> {
    let Expr::Array(array) = value else {
        return Err(syn::Error::new_spanned(
            value,
            "expected an array of keys, as in `keys = [\"user:{id}\", \"profile:{id}\"]`; one key goes in `key = ..`",
        ));
    };
    let mut keys = Vec::new();
    let mut error: Option<syn::Error> = None;
    for elem in array.elems {
        match KeySpec::from_expr(ungroup(elem)) {
            Ok(key) => keys.push(key),
            Err(e) => match &mut error {
                Some(first) => first.combine(e),
                None => error = Some(e),
            },
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(keys),
    }
}

/// `get_user(id)`, `path::to::f::<T>(a, b)`, `Self::get(self, id)`, `self.get(id)`.
fn parse_call(input: ParseStream<'_>) -> syn::Result<CachedCall> {
    let expr = ungroup(input.parse()?);
    match &expr {
        Expr::Call(call) => {
            let Expr::Path(path) = &*call.func else {
                return Err(not_a_call(&call.func));
            };
            Ok(CachedCall {
                callee: Callee::Path(path.clone()),
                args: call.args.iter().cloned().collect(),
                expr: expr.clone(),
            })
        }
        Expr::MethodCall(call) => Ok(CachedCall {
            callee: Callee::Method {
                receiver: call.receiver.clone(),
                method: call.method.clone(),
                turbofish: call.turbofish.clone(),
            },
            args: call.args.iter().cloned().collect(),
            expr: expr.clone(),
        }),
        Expr::Path(path) => Err(syn::Error::new_spanned(
            path,
            format!(
                "`{}` needs the arguments whose entry to remove: write it as a call, as in `get_user(id)`",
                quote::quote!(#path).to_string().replace(' ', "")
            ),
        )),
        other => Err(not_a_call(other)),
    }
}

fn not_a_call(expr: &Expr) -> syn::Error {
    let expected = OPTIONS
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ");
    syn::Error::new_spanned(expr, format!("expected an option ({expected}){CALL_USAGE}"))
}
