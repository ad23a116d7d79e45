//! Key and tag templates: `"user:{id}"`, `"org:{user.org_id}:{email:hash}"`, `"{{literal}}"`.
//!
//! A template is split into literal text and placeholders here, once, with every syntax error
//! reported on the literal (spans inside a string literal are not available on stable Rust, so
//! each message quotes the placeholder it is about). Whether a placeholder names an argument is
//! checked later, against the signature (`cached/check.rs`).

use proc_macro2::{Ident, Span};
use syn::LitStr;
use syn::ext::IdentExt;
use syn::parse::Parser;

/// A parsed template, with the literal it came from for spans.
#[derive(Clone)]
pub(crate) struct Template {
    pub(crate) lit: LitStr,
    pub(crate) parts: Vec<Part>,
}

#[derive(Clone)]
pub(crate) enum Part {
    /// Text copied into the key as it is (`{{` and `}}` already unescaped).
    Lit(String),
    Placeholder(Placeholder),
}

/// `{root.field.sub:format}`.
#[derive(Clone)]
pub(crate) struct Placeholder {
    /// The placeholder as written, braces included, for messages.
    pub(crate) text: String,
    /// The argument (or `self`) it names, spanned on the literal.
    pub(crate) root: Ident,
    /// Fields read from the argument, in order.
    pub(crate) fields: Vec<syn::Member>,
    pub(crate) format: Format,
}

/// How a placeholder's value is written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Its `Display` output, escaped.
    Display,
    /// A stable hash of its `Display` output (`:hash`), for personal data.
    Hash,
    /// Lowercased (`:lower`).
    Lower,
    /// Uppercased (`:upper`).
    Upper,
}

const FORMATS: &str = "`hash`, `lower`, `upper`";

impl Format {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "hash" => Some(Format::Hash),
            "lower" => Some(Format::Lower),
            "upper" => Some(Format::Upper),
            _ => None,
        }
    }
}

impl Template {
    /// Parses `lit`'s value; `what` names the option in messages ("key", "tag").
    pub(crate) fn parse(lit: &LitStr, what: &str) -> syn::Result<Template> {
        let text = lit.value();
        let span = lit.span();
        let mut errors: Vec<syn::Error> = Vec::new();
        let mut error = |message: String| errors.push(syn::Error::new(span, message));

        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|&(_, next)| next == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|&(_, next)| next == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => error(format!(
                    "unmatched `}}` in {what} template `{text}`; write `}}}}` for a literal brace"
                )),
                '{' => {
                    let Some(end) = text[start..].find('}').map(|i| start + i) else {
                        error(format!(
                            "unclosed `{{` in {what} template `{text}`; close the placeholder with `}}`, or write `{{{{` for a literal brace"
                        ));
                        break;
                    };
                    // Skip the placeholder's characters in the outer loop.
                    while chars.next_if(|&(i, _)| i <= end).is_some() {}
                    match Placeholder::parse(&text[start..=end], what, span) {
                        Ok(placeholder) => {
                            if !literal.is_empty() {
                                parts.push(Part::Lit(std::mem::take(&mut literal)));
                            }
                            parts.push(Part::Placeholder(placeholder));
                        }
                        Err(message) => error(message),
                    }
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Lit(literal));
        }
        if text.is_empty() {
            error(format!(
                "the {what} template is empty; write a {what} such as `\"user:{{id}}\"`"
            ));
        }

        let mut errors = errors.into_iter();
        match errors.next() {
            None => Ok(Template {
                lit: lit.clone(),
                parts,
            }),
            Some(mut first) => {
                for rest in errors {
                    first.combine(rest);
                }
                Err(first)
            }
        }
    }

    pub(crate) fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.parts.iter().filter_map(|part| match part {
            Part::Placeholder(p) => Some(p),
            Part::Lit(_) => None,
        })
    }

    pub(crate) fn placeholders_mut(&mut self) -> impl Iterator<Item = &mut Placeholder> {
        self.parts.iter_mut().filter_map(|part| match part {
            Part::Placeholder(p) => Some(p),
            Part::Lit(_) => None,
        })
    }
}

impl Placeholder {
    /// Parses `{...}` (braces included) of a `what` template.
    fn parse(text: &str, what: &str, span: Span) -> Result<Placeholder, String> {
        let inner = &text[1..text.len() - 1];
        let (path, format) = match inner.split_once(':') {
            None => (inner, Format::Display),
            Some((path, name)) => match Format::from_name(name) {
                Some(format) => (path, format),
                None => {
                    return Err(format!(
                        "unknown formatter `{name}` in {what} template placeholder `{text}`; expected one of {FORMATS}"
                    ));
                }
            },
        };
        if path.is_empty() {
            return Err(format!(
                "empty placeholder `{{}}` in {what} template: name an argument, as in `{{id}}`, or write `{{{{}}}}` for literal braces"
            ));
        }
        let invalid = || {
            format!(
                "invalid {what} template placeholder `{text}`: expected an argument name, optionally followed by fields (`{{user.id}}`) and a formatter (`{{email:hash}}`)"
            )
        };
        let mut segments = path.split('.');
        let root = segments
            .next()
            .and_then(|s| parse_ident(s, span))
            .ok_or_else(invalid)?;
        let fields = segments
            .map(|s| parse_member(s, span).ok_or_else(invalid))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Placeholder {
            text: text.to_owned(),
            root,
            fields,
            format,
        })
    }

    /// The name of the argument (or `self`) it reads.
    pub(crate) fn root_name(&self) -> String {
        self.root.to_string()
    }
}

/// An identifier (keywords such as `self` included), spanned at `span`; `None` if `s` is not one.
///
/// A keyword that can be raw is made raw: a field or an argument with that name is `r#type` in
/// Rust, and a template, which is text, may spell it `{item.type}` (emitted as it is, that would
/// not parse). `self`, `Self`, `super` and `crate` have no raw form and mean themselves.
fn parse_ident(s: &str, span: Span) -> Option<Ident> {
    // The lexer decides what an identifier is (Unicode included); it reports, never panics.
    let mut ident = Ident::parse_any.parse_str(s).ok()?;
    if ident != s {
        return None;
    }
    let keyword = syn::parse_str::<Ident>(s).is_err();
    if keyword && !matches!(s, "_" | "self" | "Self" | "super" | "crate") {
        ident = Ident::new_raw(s, span);
    }
    ident.set_span(span);
    Some(ident)
}

fn parse_member(s: &str, span: Span) -> Option<syn::Member> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let index = s.parse().ok()?;
        return Some(syn::Member::Unnamed(syn::Index { index, span }));
    }
    parse_ident(s, span).map(syn::Member::Named)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Template, String> {
        Template::parse(&LitStr::new(text, Span::call_site()), "key").map_err(|e| e.to_string())
    }

    fn shape(template: &Template) -> Vec<String> {
        template
            .parts
            .iter()
            .map(|part| match part {
                Part::Lit(text) => format!("lit {text}"),
                Part::Placeholder(p) => {
                    let fields: Vec<String> = p
                        .fields
                        .iter()
                        .map(|m| match m {
                            syn::Member::Named(i) => format!(".{i}"),
                            syn::Member::Unnamed(i) => format!(".{}", i.index),
                        })
                        .collect();
                    let format = match p.format {
                        Format::Display => "",
                        Format::Hash => ":hash",
                        Format::Lower => ":lower",
                        Format::Upper => ":upper",
                    };
                    format!("arg {}{}{format}", p.root, fields.concat())
                }
            })
            .collect()
    }

    #[test]
    fn literals_placeholders_fields_and_formatters() {
        let t = parse("user:{id}:{user.org.0}:{email:hash}{{x}}").unwrap();
        assert_eq!(
            shape(&t),
            [
                "lit user:",
                "arg id",
                "lit :",
                "arg user.org.0",
                "lit :",
                "arg email:hash",
                "lit {x}"
            ]
        );
        let t = parse("{self.id}:{name:lower}:{name:upper}").unwrap();
        assert_eq!(
            shape(&t),
            [
                "arg self.id",
                "lit :",
                "arg name:lower",
                "lit :",
                "arg name:upper"
            ]
        );
    }

    #[test]
    fn keywords_are_raw_where_they_can_be() {
        let t = parse("{type}:{item.type}:{item.r#type}:{self.0}").unwrap();
        assert_eq!(
            shape(&t),
            [
                "arg r#type",
                "lit :",
                "arg item.r#type",
                "lit :",
                "arg item.r#type",
                "lit :",
                "arg self.0"
            ]
        );
        // No raw form: kept as written (and reported later as naming no argument), never a panic.
        for text in ["{_}", "{super}", "{Self}", "{crate}", "{self.super}"] {
            let _ = parse(text);
        }
    }

    #[test]
    fn syntax_errors_name_the_problem() {
        let err = |text| parse(text).err().unwrap();
        assert!(err("user:{id").contains("unclosed `{`"));
        assert!(err("user:id}").contains("unmatched `}`"));
        assert!(err("{}").contains("empty placeholder"));
        assert!(err("{id:sha}").contains("unknown formatter `sha`"));
        assert!(err("{id:sha}").contains("`hash`, `lower`, `upper`"));
        assert!(err("{a..b}").contains("invalid key template placeholder `{a..b}`"));
        assert!(err("{1a}").contains("invalid"));
        assert!(err("{a b}").contains("invalid"));
        assert!(err("").contains("empty"));
    }
}
