//! Glob patterns over keys, with the syntax of Redis `SCAN MATCH`: `*` any run, `?` one
//! character, `[abc]` / `[a-z]` / `[^a]` a set, `\` escapes the next character.
//!
//! Matching uses the classic single-backtrack-point algorithm: at worst pattern length times key
//! length, never exponential, so a hostile pattern such as `*a*a*a*a*b` stays cheap.

/// A compiled glob pattern.
///
/// # Examples
///
/// ```
/// use cache_core::Glob;
///
/// let g = Glob::new("user:*:videos");
/// assert!(g.matches("user:42:videos"));
/// assert!(!g.matches("user:42:likes"));
/// assert!(Glob::new("user:\\*").matches("user:*"));
/// assert!(!Glob::new("user:\\*").matches("user:42"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
    source: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Char(char),
    Any,
    Star,
    Set {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl Glob {
    /// Compiles `pattern`. Every string is a valid pattern: an unclosed `[` is a literal `[`, a
    /// trailing `\` a literal `\`, as in Redis.
    pub fn new(pattern: &str) -> Self {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::Any),
                '\\' if i + 1 < chars.len() => {
                    i += 1;
                    tokens.push(Token::Char(chars[i]));
                }
                '[' => match parse_set(&chars[i + 1..]) {
                    Some((token, used)) => {
                        tokens.push(token);
                        i += used;
                    }
                    None => tokens.push(Token::Char('[')),
                },
                c => tokens.push(Token::Char(c)),
            }
            i += 1;
        }
        Glob {
            tokens,
            source: pattern.to_owned(),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern has no wildcard, so it names exactly one key.
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Char(_)))
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (mut p, mut t) = (0, 0);
        let mut backtrack: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::Star) => {
                    backtrack = Some((p, t));
                    p += 1;
                    continue;
                }
                Some(tok) if tok.accepts(text[t]) => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
            match backtrack {
                Some((bp, bt)) => {
                    p = bp + 1;
                    t = bt + 1;
                    backtrack = Some((bp, bt + 1));
                }
                None => return false,
            }
        }
        self.tokens[p..].iter().all(|tok| *tok == Token::Star)
    }
}

impl Token {
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Char(x) => *x == c,
            Token::Any => true,
            Token::Star => false,
            Token::Set { negated, items } => {
                items.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

/// Parses the inside of `[...]`; returns the token and how many characters it used (including the
/// closing `]`), or `None` when there is no closing bracket.
fn parse_set(rest: &[char]) -> Option<(Token, usize)> {
    let mut i = 0;
    let negated = matches!(rest.first(), Some('^') | Some('!'));
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    while i < rest.len() {
        let mut c = rest[i];
        if c == ']' && !first {
            return Some((Token::Set { negated, items }, i + 1));
        }
        first = false;
        if c == '\\' && i + 1 < rest.len() {
            i += 1;
            c = rest[i];
        }
        if i + 2 < rest.len() && rest[i + 1] == '-' && rest[i + 2] != ']' {
            let mut hi = rest[i + 2];
            i += 2;
            if hi == '\\' && i + 1 < rest.len() {
                i += 1;
                hi = rest[i];
            }
            let (lo, hi) = if c <= hi { (c, hi) } else { (hi, c) };
            items.push((lo, hi));
        } else {
            items.push((c, c));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn stars_questions_and_sets() {
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a*b*c").matches("aXXbYYc"));
        assert!(!Glob::new("a*b*c").matches("aXXbYY"));
        assert!(Glob::new("h?llo").matches("hello"));
        assert!(Glob::new("h[ae]llo").matches("hallo"));
        assert!(!Glob::new("h[^e]llo").matches("hello"));
        assert!(Glob::new("v[0-9]").matches("v7"));
        assert!(Glob::new("a[").matches("a["));
    }

    #[test]
    fn escapes_make_metacharacters_literal() {
        let g = Glob::new("user:\\*");
        assert!(g.matches("user:*"));
        assert!(!g.matches("user:1"));
        assert!(Glob::new("a\\\\b").matches("a\\b"));
        assert!(Glob::new("user:\\*").is_literal());
    }

    #[test]
    fn many_stars_stay_fast() {
        let text = "a".repeat(10_000);
        let g = Glob::new("*a*a*a*a*a*a*a*a*b");
        assert!(!g.matches(&text));
    }
}
