//! Glob patterns over keys, matching exactly as Redis `SCAN MATCH` does (`stringmatchlen` in
//! Redis's `util.c`), so that the memory tier, the backplane and Redis remove the same keys:
//!
//! - matching is on bytes: `?` is one byte, not one character (`?` never matches `é`, two bytes
//!   in UTF-8), and a set matches one byte;
//! - `*` is any run of bytes, `\` makes the next byte literal (a trailing `\` is itself);
//! - `[abc]`, `[a-z]` (either order: `[z-a]` is the same set), `[^a]` (only `^` negates: `[!a]` is
//!   the set of `!` and `a`), `\` escapes a byte inside a set too; a `]` right after `[` or `[^`
//!   closes the set (`[]` matches nothing, `[^]` any byte);
//! - an unclosed `[` is a set running to the end of the pattern (`a[bc` is `a[bc]`; `a[` matches
//!   nothing), and a range's end may be `]` (`[a-]` is the unclosed set from `]` to `a`).
//!
//! Range bounds compare as C `char`, which is signed on x86-64: a range with one bound below
//! 0x80 and the other above it holds the bytes from the high bound up to 0xff and from 0x00 up to
//! the low bound (on an ARM server, with unsigned `char`, Redis reads it the other way round).
//!
//! Matching uses the classic single-backtrack-point algorithm: at worst pattern length times key
//! length, never exponential, so a hostile pattern such as `*a*a*a*a*b` stays cheap. (Redis's own
//! recursion gives the same answers: `*` matches any run there too.)

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
/// // Bytes, as in Redis: `?` is one byte, and `é` is two.
/// assert!(!Glob::new("city:?").matches("city:é"));
/// assert!(Glob::new("city:??").matches("city:é"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
    source: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Byte(u8),
    Any,
    Star,
    Set { negated: bool, items: Vec<Item> },
}

/// One member of a `[...]` set.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Byte(u8),
    /// Bounds as C's signed `char`, low first.
    Range(i8, i8),
}

impl Glob {
    /// Compiles `pattern`. Every string is a valid pattern, read as Redis reads it (see the
    /// module docs for unclosed brackets and a trailing `\`).
    ///
    /// ```
    /// use cache_core::Glob;
    ///
    /// let g = Glob::new("user:[0-9]*");
    /// assert!(g.matches("user:42"));
    /// assert!(!g.matches("user:ada"));
    /// ```
    pub fn new(pattern: &str) -> Self {
        let p = pattern.as_bytes();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < p.len() {
            match p[i] {
                b'*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                    i += 1;
                }
                b'?' => {
                    tokens.push(Token::Any);
                    i += 1;
                }
                b'\\' if i + 1 < p.len() => {
                    tokens.push(Token::Byte(p[i + 1]));
                    i += 2;
                }
                b'[' => {
                    let (token, used) = parse_set(&p[i + 1..]);
                    tokens.push(token);
                    i += 1 + used;
                }
                b => {
                    tokens.push(Token::Byte(b));
                    i += 1;
                }
            }
        }
        Glob {
            tokens,
            source: pattern.to_owned(),
        }
    }

    /// The pattern as written.
    ///
    /// ```
    /// assert_eq!(cache_core::Glob::new("user:*").as_str(), "user:*");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern has no wildcard, so it names exactly one key.
    ///
    /// ```
    /// use cache_core::Glob;
    ///
    /// assert!(Glob::new(r"user:\*").is_literal()); // an escaped `*` is a plain byte
    /// assert!(!Glob::new("user:*").is_literal());
    /// ```
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Byte(_)))
    }

    /// Whether `text` matches the whole pattern.
    ///
    /// ```
    /// use cache_core::Glob;
    ///
    /// let g = Glob::new("session:?:*");
    /// assert!(g.matches("session:a:123"));
    /// assert!(!g.matches("session:ab:123"));
    /// ```
    pub fn matches(&self, text: &str) -> bool {
        let text = text.as_bytes();
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
    fn accepts(&self, b: u8) -> bool {
        match self {
            Token::Byte(x) => *x == b,
            Token::Any => true,
            Token::Star => false,
            Token::Set { negated, items } => {
                items.iter().any(|item| match *item {
                    Item::Byte(x) => x == b,
                    Item::Range(lo, hi) => (lo..=hi).contains(&(b as i8)),
                }) != *negated
            }
        }
    }
}

/// Parses a set from just after its `[`, as Redis does; returns the token and how many bytes it
/// used (the closing `]` included). There is no failure: an unclosed set runs to the end.
fn parse_set(rest: &[u8]) -> (Token, usize) {
    let mut i = 0;
    let negated = rest.first() == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    loop {
        let left = rest.len() - i;
        if left >= 2 && rest[i] == b'\\' {
            // An escaped byte is only ever itself: it cannot start a range.
            items.push(Item::Byte(rest[i + 1]));
            i += 2;
        } else if left == 0 {
            break;
        } else if rest[i] == b']' {
            // Even first: `[]` is the empty set, not a set holding `]`.
            i += 1;
            break;
        } else if left >= 3 && rest[i + 1] == b'-' {
            // The end is taken as it is, even `]` or `\`.
            let (a, b) = (rest[i] as i8, rest[i + 2] as i8);
            items.push(Item::Range(a.min(b), a.max(b)));
            i += 3;
        } else {
            items.push(Item::Byte(rest[i]));
            i += 1;
        }
    }
    (Token::Set { negated, items }, i)
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
        assert!(Glob::new("v[9-0]").matches("v7"), "a range in either order");
    }

    /// Where Redis's `stringmatchlen` differs from shell globs; `tests/tests/redis_backend.rs`
    /// checks a larger table against a real server.
    #[test]
    fn reads_patterns_as_redis_does() {
        // Bytes, not characters.
        assert!(!Glob::new("city:?").matches("city:é"));
        assert!(Glob::new("city:??").matches("city:é"));
        assert!(Glob::new("[é][é]").matches("é"));
        // Only `^` negates; `!` is a member.
        assert!(Glob::new("u:[!0]").matches("u:0"));
        assert!(Glob::new("u:[!0]").matches("u:!"));
        assert!(!Glob::new("u:[!0]").matches("u:1"));
        // `]` right after `[` closes the set.
        assert!(!Glob::new("[]").matches("]"));
        assert!(Glob::new("[^]]").matches("a]"));
        // Unclosed sets run to the end of the pattern.
        assert!(!Glob::new("a[").matches("a["));
        assert!(Glob::new("a[bc").matches("ab"));
        assert!(Glob::new("[^").matches("x"));
        // A range may end in `]`; an escaped byte never starts a range.
        assert!(Glob::new("[a-]").matches("^"));
        assert!(Glob::new("[\\a-c]").matches("-"));
        assert!(!Glob::new("[\\a-c]").matches("b"));
        // Bounds compare as signed C `char`: `[a-é]` holds `!` and not `b`.
        assert!(Glob::new("[a-é]").matches("!"));
        assert!(!Glob::new("[a-é]").matches("b"));
        // `*` matches the empty key (Redis sees it after the cache's prefix).
        assert!(Glob::new("*").matches(""));
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
