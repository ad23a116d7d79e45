//! `#[cached(...)]`'s options as typed values, each with its span.
//!
//! Every option is parsed on its own; a malformed one is reported and skipped up to the next
//! comma, so one build lists every mistake in the attribute. Values are checked here as far as
//! they can be without the function (a TTL string, a template's braces, a path); what needs the
//! signature is in `check.rs`.
//!
//! Adding an option: a keyword in `kw`, a variant in [`CachedOption`] and its arm in
//! `CachedOption::parse`, a field in [`Args`] set in [`parse_args`]. An option that other
//! attributes stacked on `#[cached]` pass in (not written by users) is left out of [`OPTIONS`] so
//! messages do not offer it.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitBool, LitStr, Path, Token};

use crate::errors::Errors;
use crate::key_template::Template;
use crate::options::{
    cache_name, crate_path, expect_bool, parse_list, parse_templates, set_once, unknown_option,
    value_after_eq,
};

/// The hidden option through which `#[cache_if]`, expanding first, hands its arguments to
/// `#[cached]`: `__cache_if = (<the arguments of #[cache_if]>)`.
pub(crate) const CACHE_IF_OPTION: &str = "__cache_if";

mod kw {
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(key);
    syn::custom_keyword!(cache);
    syn::custom_keyword!(tags);
    syn::custom_keyword!(skip);
    syn::custom_keyword!(cache_none);
    syn::custom_keyword!(stale);
    syn::custom_keyword!(fail_safe);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(soft_timeout);
    syn::custom_keyword!(refresh_ahead);
    syn::custom_keyword!(jitter);
}

/// The options users write, as offered in messages.
const OPTIONS: &[&str] = &[
    "ttl",
    "key",
    "cache",
    "tags",
    "skip",
    "cache_none",
    "stale",
    "fail_safe",
    "timeout",
    "soft_timeout",
    "refresh_ahead",
    "jitter",
    "crate",
];

/// `#[cached]`'s options, each set at most once.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) ttl: Option<Ttl>,
    pub(crate) key: Option<KeySpec>,
    pub(crate) cache: Option<LitStr>,
    pub(crate) tags: Option<Vec<Template>>,
    pub(crate) skip: Option<Skip>,
    pub(crate) cache_none: Option<LitBool>,
    pub(crate) krate: Option<Path>,
    /// `stale = ..`, `fail_safe = ..`, `timeout = ..`, `soft_timeout = ..`: windows and timeouts.
    pub(crate) stale: Option<Timed>,
    pub(crate) fail_safe: Option<Timed>,
    pub(crate) timeout: Option<Timed>,
    pub(crate) soft_timeout: Option<Timed>,
    pub(crate) refresh_ahead: Option<Refresh>,
    pub(crate) jitter: Option<(Span, u8)>,
    /// `__cache_if = (...)`, from a `#[cache_if]` that expanded first (checked in `check.rs`
    /// with the `#[cache_if]` attributes found on the function).
    pub(crate) cache_if: Vec<CacheIfTokens>,
}

/// The arguments of one `#[cache_if(...)]`, parsed later, and where it was written.
pub(crate) struct CacheIfTokens {
    pub(crate) span: Span,
    pub(crate) tokens: TokenStream,
    /// The attribute's path, when `#[cached]` took it off the function: the expansion names it
    /// once more so that its `use` is not reported unused.
    pub(crate) path: Option<Path>,
}

/// `ttl = 1800` or `ttl = "30m"`, in milliseconds (never 0).
pub(crate) struct Ttl {
    pub(crate) ms: u64,
}

/// A duration option with where it was written (its keyword).
pub(crate) struct Timed {
    pub(crate) span: Span,
    pub(crate) ms: u64,
}

/// `refresh_ahead` (XFetch) or `refresh_ahead = 0.8` (a fixed fraction of the TTL).
pub(crate) struct Refresh {
    pub(crate) span: Span,
    pub(crate) fraction: Option<f64>,
}

/// `key = "template"` or `key = <expression>`.
pub(crate) enum KeySpec {
    Template(Template),
    Expr(Box<Expr>),
}

/// `skip(a, b)`.
pub(crate) struct Skip {
    pub(crate) keyword: Span,
    pub(crate) names: Vec<Ident>,
}

/// One option as written.
enum CachedOption {
    Ttl(kw::ttl, Ttl),
    Key(kw::key, KeySpec),
    Cache(kw::cache, LitStr),
    Tags(kw::tags, Vec<Template>),
    Skip(Skip),
    CacheNone(kw::cache_none, LitBool),
    Timed(&'static str, Timed),
    Refresh(Refresh),
    Jitter(Span, u8),
    Crate(Token![crate], Path),
    CacheIf(Ident, TokenStream),
}

/// Parses the attribute's arguments, reporting every error into `errors`.
pub(crate) fn parse_args(tokens: TokenStream, errors: &Errors) -> Args {
    let options = parse_list(tokens, errors, CachedOption::parse);
    let mut args = Args::default();
    for option in options {
        match option {
            CachedOption::Ttl(k, v) => set_once(&mut args.ttl, "ttl", k.span, v, errors),
            CachedOption::Key(k, v) => set_once(&mut args.key, "key", k.span, v, errors),
            CachedOption::Cache(k, v) => set_once(&mut args.cache, "cache", k.span, v, errors),
            CachedOption::Tags(k, v) => set_once(&mut args.tags, "tags", k.span, v, errors),
            CachedOption::Skip(v) => set_once(&mut args.skip, "skip", v.keyword, v, errors),
            CachedOption::CacheNone(k, v) => {
                set_once(&mut args.cache_none, "cache_none", k.span, v, errors);
            }
            CachedOption::Timed(name, v) => {
                let slot = match name {
                    "stale" => &mut args.stale,
                    "fail_safe" => &mut args.fail_safe,
                    "timeout" => &mut args.timeout,
                    _ => &mut args.soft_timeout,
                };
                let span = v.span;
                set_once(slot, name, span, v, errors);
            }
            CachedOption::Refresh(v) => {
                let span = v.span;
                set_once(&mut args.refresh_ahead, "refresh_ahead", span, v, errors);
            }
            CachedOption::Jitter(span, v) => {
                set_once(&mut args.jitter, "jitter", span, (span, v), errors);
            }
            CachedOption::Crate(k, v) => set_once(&mut args.krate, "crate", k.span, v, errors),
            CachedOption::CacheIf(k, tokens) => {
                args.cache_if.push(CacheIfTokens {
                    span: k.span(),
                    tokens,
                    path: None,
                });
            }
        }
    }
    args
}

impl CachedOption {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(kw::ttl) {
            let k: kw::ttl = input.parse()?;
            let value = value_after_eq(input, k.span, TTL_USAGE)?;
            Ok(CachedOption::Ttl(k, Ttl::from_expr(&value)?))
        } else if input.peek(kw::key) {
            let k: kw::key = input.parse()?;
            let value = value_after_eq(
                input,
                k.span,
                "`key = \"user:{id}\"` or `key = <expression>`",
            )?;
            Ok(CachedOption::Key(k, KeySpec::from_expr(value)?))
        } else if input.peek(kw::cache_none) {
            let k: kw::cache_none = input.parse()?;
            let value = value_after_eq(input, k.span, "`cache_none = true`")?;
            Ok(CachedOption::CacheNone(
                k,
                expect_bool(value, "cache_none")?,
            ))
        } else if input.peek(kw::stale) {
            let k: kw::stale = input.parse()?;
            Ok(CachedOption::Timed(
                "stale",
                timed(
                    input,
                    k.span,
                    "stale",
                    "`stale = 600` (seconds past the TTL) or `stale = \"10m\"`",
                )?,
            ))
        } else if input.peek(kw::fail_safe) {
            let k: kw::fail_safe = input.parse()?;
            Ok(CachedOption::Timed(
                "fail_safe",
                timed(
                    input,
                    k.span,
                    "fail_safe",
                    "`fail_safe = 3600` (seconds past the TTL) or `fail_safe = \"1h\"`",
                )?,
            ))
        } else if input.peek(kw::timeout) {
            let k: kw::timeout = input.parse()?;
            Ok(CachedOption::Timed(
                "timeout",
                timed(
                    input,
                    k.span,
                    "timeout",
                    "`timeout = \"2s\"` or `timeout = 2` (seconds)",
                )?,
            ))
        } else if input.peek(kw::soft_timeout) {
            let k: kw::soft_timeout = input.parse()?;
            Ok(CachedOption::Timed(
                "soft_timeout",
                timed(
                    input,
                    k.span,
                    "soft_timeout",
                    "`soft_timeout = \"100ms\"` or `soft_timeout = 1` (seconds)",
                )?,
            ))
        } else if input.peek(kw::refresh_ahead) {
            let k: kw::refresh_ahead = input.parse()?;
            Ok(CachedOption::Refresh(parse_refresh(input, k.span)?))
        } else if input.peek(kw::jitter) {
            let k: kw::jitter = input.parse()?;
            let value = value_after_eq(input, k.span, "`jitter = 10` (percent)")?;
            Ok(CachedOption::Jitter(k.span, parse_percent(&value)?))
        } else if input.peek(kw::cache) {
            let k: kw::cache = input.parse()?;
            let value = value_after_eq(input, k.span, "`cache = \"users\"`")?;
            let name = cache_name(value, ", or leave the option out to use `\"default\"`")?;
            Ok(CachedOption::Cache(k, name))
        } else if input.peek(kw::tags) {
            let k: kw::tags = input.parse()?;
            let value = value_after_eq(input, k.span, "`tags = [\"user:{id}\"]`")?;
            Ok(CachedOption::Tags(
                k,
                parse_templates(value, "tag", "tags", "user:{id}")?,
            ))
        } else if input.peek(kw::skip) {
            let k: kw::skip = input.parse()?;
            Ok(CachedOption::Skip(parse_skip(input, k.span)?))
        } else if input.peek(Token![crate]) {
            let k: Token![crate] = input.parse()?;
            let value = value_after_eq(input, k.span, "`crate = \"::cache_core\"`")?;
            Ok(CachedOption::Crate(k, crate_path(value)?))
        } else if input.peek(Ident::peek_any)
            && input.fork().call(Ident::parse_any)? == CACHE_IF_OPTION
        {
            // Written by `#[cache_if]` when it expands before `#[cached]`: its arguments, as is.
            let k = input.call(Ident::parse_any)?;
            input.parse::<Token![=]>()?;
            let content;
            syn::parenthesized!(content in input);
            Ok(CachedOption::CacheIf(k, content.parse()?))
        } else {
            Err(unknown_option(input, OPTIONS, ""))
        }
    }
}

/// `name = <seconds or duration string>`, as a TTL is written.
fn timed(input: ParseStream<'_>, span: Span, name: &str, usage: &str) -> syn::Result<Timed> {
    let value = value_after_eq(input, span, usage)?;
    let ms = duration_ms(&value, name, usage)?;
    Ok(Timed { span, ms })
}

/// `refresh_ahead` alone, or `= <fraction>` / `= "xfetch"`.
fn parse_refresh(input: ParseStream<'_>, span: Span) -> syn::Result<Refresh> {
    if !input.peek(Token![=]) {
        return Ok(Refresh {
            span,
            fraction: None,
        });
    }
    let usage = "`refresh_ahead` (XFetch: no window to tune) or `refresh_ahead = 0.8` (refresh entries read after 80% of their TTL)";
    let value = value_after_eq(input, span, usage)?;
    match &value {
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => {
            let fraction: f64 = f.base10_parse()?;
            if !(fraction > 0.0 && fraction < 1.0 && f.suffix().is_empty()) {
                return Err(syn::Error::new(
                    f.span(),
                    format!(
                        "`refresh_ahead` takes a fraction of the TTL between 0 and 1, as in {usage}"
                    ),
                ));
            }
            Ok(Refresh {
                span,
                fraction: Some(fraction),
            })
        }
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) if s.value() == "xfetch" => Ok(Refresh {
            span,
            fraction: None,
        }),
        other => Err(syn::Error::new_spanned(other, format!("expected {usage}"))),
    }
}

/// `jitter = 10`: a whole percentage, 1..=100.
fn parse_percent(value: &Expr) -> syn::Result<u8> {
    if let Expr::Lit(ExprLit {
        lit: Lit::Int(int), ..
    }) = value
        && let Ok(p) = int.base10_parse::<u8>()
        && (1..=100).contains(&p)
        && int.suffix().is_empty()
    {
        return Ok(p);
    }
    Err(syn::Error::new_spanned(
        value,
        "`jitter` takes a whole percentage from 1 to 100, as in `jitter = 10` (TTLs shortened by up to 10%)",
    ))
}

/// A duration option other than `ttl` in milliseconds (never 0).
fn duration_ms(value: &Expr, name: &str, usage: &str) -> syn::Result<u64> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) if int.suffix().is_empty() => {
            let secs: u64 = int.base10_parse()?;
            if secs == 0 {
                return Err(syn::Error::new(
                    int.span(),
                    format!("`{name}` must be greater than zero; leave the option out instead"),
                ));
            }
            secs.checked_mul(1000)
                .ok_or_else(|| syn::Error::new(int.span(), format!("`{name}` is too large")))
        }
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => match parse_duration(&s.value(), &format!("`{name}`")) {
            Ok(0) => Err(syn::Error::new(
                s.span(),
                format!("`{name}` must be greater than zero; leave the option out instead"),
            )),
            Ok(ms) => Ok(ms),
            Err(message) => Err(syn::Error::new(s.span(), message)),
        },
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a duration for `{name}`: {usage}"),
        )),
    }
}

const TTL_USAGE: &str = "`ttl = 1800` (seconds) or `ttl = \"30m\"`";

const UNITS: &str = "`ms`, `s`, `m`, `h`, `d`";

impl Ttl {
    fn from_expr(value: &Expr) -> syn::Result<Ttl> {
        let zero = |span: Span| {
            syn::Error::new(
                span,
                "`ttl` must be greater than zero; leave the option out to use the cache policy's TTL",
            )
        };
        match value {
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) => {
                if !int.suffix().is_empty() {
                    let written = int.to_string();
                    let as_string = match parse_duration(&written, "TTL") {
                        Ok(_) => format!(", or a duration string: `ttl = \"{written}\"`"),
                        Err(_) => String::new(),
                    };
                    return Err(syn::Error::new(
                        int.span(),
                        format!(
                            "unexpected suffix `{}`: write whole seconds without a suffix (`ttl = {}`){as_string}",
                            int.suffix(),
                            int.base10_digits(),
                        ),
                    ));
                }
                let secs: u64 = int.base10_parse()?;
                if secs == 0 {
                    return Err(zero(int.span()));
                }
                let ms = secs
                    .checked_mul(1000)
                    .ok_or_else(|| syn::Error::new(int.span(), "`ttl` is too large"))?;
                Ok(Ttl { ms })
            }
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => match parse_duration(&s.value(), "TTL") {
                Ok(0) => Err(zero(s.span())),
                Ok(ms) => Ok(Ttl { ms }),
                Err(message) => Err(syn::Error::new(s.span(), message)),
            },
            other => Err(syn::Error::new_spanned(
                other,
                format!("expected the TTL as whole seconds or as a duration string: {TTL_USAGE}"),
            )),
        }
    }
}

/// Milliseconds in a duration string such as `"30m"`, `"1h30m"`, `"500ms"`, `"1h 30m"`. `what`
/// names the option in messages: `TTL`, `` `stale` ``.
fn parse_duration(text: &str, what: &str) -> Result<u64, String> {
    let invalid = |why: String| {
        format!(
            "invalid {what} `{text}`: {why}; write numbers with units ({UNITS}), as in `\"30m\"` or `\"1h30m\"`"
        )
    };
    let too_large = || format!("{what} `{text}` is too large");
    let mut rest = text.trim_start();
    let mut total: u64 = 0;
    if rest.is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(invalid(format!("expected a number at `{rest}`")));
        }
        let (number, after) = rest.split_at(digits);
        rest = after;
        let letters = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = &rest[..letters];
        let scale: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(invalid(format!("`{number}` has no unit"))),
            other => return Err(invalid(format!("unknown unit `{other}`"))),
        };
        rest = rest[letters..].trim_start();
        total = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(too_large)?;
    }
    Ok(total)
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

fn parse_skip(input: ParseStream<'_>, keyword: Span) -> syn::Result<Skip> {
    let usage =
        "expected the arguments to leave out of the default key, as in `skip(conn, request_id)`";
    if !input.peek(syn::token::Paren) {
        return Err(syn::Error::new(keyword, usage));
    }
    let content;
    syn::parenthesized!(content in input);
    let names = Punctuated::<Ident, Token![,]>::parse_terminated_with(&content, Ident::parse_any)
        .map_err(|e| syn::Error::new(e.span(), usage))?;
    Ok(Skip {
        keyword,
        names: names.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m", "TTL"), Ok(1_800_000));
        assert_eq!(parse_duration("1h30m", "TTL"), Ok(5_400_000));
        assert_eq!(parse_duration("1h 30m", "TTL"), Ok(5_400_000));
        assert_eq!(parse_duration("500ms", "TTL"), Ok(500));
        assert_eq!(parse_duration("2d", "TTL"), Ok(172_800_000));
        assert_eq!(parse_duration("45s", "TTL"), Ok(45_000));
        assert_eq!(parse_duration("0s", "TTL"), Ok(0));
        for bad in [
            "",
            "30",
            "m",
            "30min",
            "1h30",
            "-5s",
            "1.5h",
            "99999999999999999999s",
        ] {
            assert!(
                parse_duration(bad, "TTL").is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
