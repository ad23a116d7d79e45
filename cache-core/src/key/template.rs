//! Key templates parsed at run time (`"user:{user_id}:*"`), for invalidation events. The macros
//! parse their templates at compile time instead; both render values the same way, escaped.

use std::fmt;

use super::KeyBuf;

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Lit(String),
    Arg(String),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) source: String,
    pub(crate) parts: Vec<Part>,
}

/// How a rendered value is escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Render {
    /// For keys and tags: the value's key form.
    Key,
    /// For glob patterns: the key form escaped again, so the value matches only itself.
    Pattern,
}

/// A template that does not parse.
///
/// ```
/// use cache_core::{CacheManager, Event, EventError};
///
/// let manager = CacheManager::builder().build();
/// let err = manager.register_event(Event::new("e", ["id"]).tag("user:{id")).unwrap_err();
/// let EventError::Template(err) = err else { panic!("{err}") };
/// assert!(err.to_string().contains("user:{id"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub(crate) template: String,
    pub(crate) reason: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid key template `{}`: {}",
            self.template, self.reason
        )
    }
}

impl std::error::Error for TemplateError {}

impl Template {
    pub(crate) fn parse(source: &str) -> Result<Self, TemplateError> {
        let err = |reason: String| TemplateError {
            template: source.to_owned(),
            reason,
        };
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => {
                                return Err(err(
                                    "unclosed `{`; write `{{` for a literal brace".into()
                                ));
                            }
                        }
                    }
                    let valid = !name.is_empty()
                        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
                        && !name.starts_with(|c: char| c.is_ascii_digit());
                    if !valid {
                        return Err(err(format!(
                            "`{{{name}}}` is not a placeholder; names are identifiers like `{{user_id}}`"
                        )));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Arg(name));
                }
                '}' => return Err(err("unmatched `}`; write `}}` for a literal brace".into())),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template {
            source: source.to_owned(),
            parts,
        })
    }

    pub(crate) fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Arg(name) => Some(name.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Renders with `lookup` giving each placeholder's (unescaped) value.
    pub(crate) fn render<'a>(
        &self,
        mode: Render,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Arg(name) => {
                    let value = lookup(name)?;
                    let mut key_form = KeyBuf::new();
                    key_form.part(value);
                    match mode {
                        Render::Key => out.push_str(key_form.as_str()),
                        Render::Pattern => out.push_str(&super::escape_glob(key_form.as_str())),
                    }
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let t = Template::parse("user:{id}:{{x}}:*").unwrap();
        assert_eq!(t.placeholders().collect::<Vec<_>>(), ["id"]);
        assert_eq!(
            t.render(Render::Key, |_| Some("a:b")).unwrap(),
            "user:a\\:b:{x}:*"
        );
        assert_eq!(
            t.render(Render::Pattern, |_| Some("*")).unwrap(),
            "user:\\\\\\*:{x}:*"
        );
    }

    #[test]
    fn rejects_malformed_templates() {
        assert!(Template::parse("user:{id").is_err());
        assert!(Template::parse("user:{}").is_err());
        assert!(Template::parse("user:{a b}").is_err());
        assert!(Template::parse("user:}").is_err());
    }
}
