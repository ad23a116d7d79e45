//! Escaping of argument values inside keys, tags and patterns.
//!
//! Every value substituted into a template is escaped so that (a) two different argument values
//! never render to the same key (`user:{a}:{b}` with `a = "1:2", b = "3"` and with `a = "1",
//! b = "2:3"` stay distinct) and (b) a value can never act as a glob: a user id of `*` names the
//! one key `user:\*`, not every user. The literal parts of a template are written as they are.

use std::fmt;

/// Characters that get a backslash in front: the escape itself, the key separator and every glob
/// metacharacter understood by [`glob`](crate::invalidation) and Redis `SCAN MATCH`.
const SPECIAL: &[u8] = b"\\:*?[]^{}";

/// Which bytes [`needs_escape`]: control characters, DEL and [`SPECIAL`], as a table, because
/// `SPECIAL.contains` compiled to a `memchr` call per byte of every string placeholder (a fifth
/// of a hit on a `user:{email}` key).
const ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[0x7f] = true;
    let mut i = 0;
    while i < SPECIAL.len() {
        table[SPECIAL[i] as usize] = true;
        i += 1;
    }
    table
};

#[inline(always)]
fn needs_escape(b: u8) -> bool {
    ESCAPED[usize::from(b)]
}

/// A `fmt::Write` that escapes what passes through it into an inner writer.
pub(crate) struct Escaper<'a, W: fmt::Write + ?Sized> {
    pub(crate) inner: &'a mut W,
    pub(crate) case: Case,
}

/// The optional case folding of the `{arg:lower}` / `{arg:upper}` formatters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Case {
    Keep,
    Lower,
    Upper,
}

impl<W: fmt::Write + ?Sized> fmt::Write for Escaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Fast path: most values (numbers, slugs) need nothing.
        if self.case == Case::Keep && !s.bytes().any(needs_escape) {
            return self.inner.write_str(s);
        }
        for c in s.chars() {
            let c = match self.case {
                Case::Keep => c,
                // Only simple one-to-one mappings, so a key's length stays predictable.
                Case::Lower => c.to_lowercase().next().unwrap_or(c),
                Case::Upper => c.to_uppercase().next().unwrap_or(c),
            };
            if c.is_ascii() && needs_escape(c as u8) {
                if (c as u8) < 0x20 || c as u8 == 0x7f {
                    write!(self.inner, "\\x{:02x}", c as u8)?;
                } else {
                    self.inner.write_char('\\')?;
                    self.inner.write_char(c)?;
                }
            } else {
                self.inner.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Escapes one argument value the way key templates do, for building keys by hand that match
/// macro-made ones.
///
/// # Examples
///
/// ```
/// assert_eq!(cache_core::escape_key_part("42"), "42");
/// assert_eq!(cache_core::escape_key_part("a:b*"), "a\\:b\\*");
/// ```
pub fn escape_key_part(value: &str) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(value.len());
    let _ = Escaper {
        inner: &mut out,
        case: Case::Keep,
    }
    .write_str(value);
    out
}

/// Glob metacharacters (Redis `SCAN MATCH` syntax): escaped in [`escape_glob`].
const GLOB_SPECIAL: &[u8] = b"\\*?[]^";

/// Escapes a string so that, used inside a glob pattern, it matches only itself.
///
/// Keys already hold escaped argument values (`user:a\:b` for the value `a:b`), so a pattern
/// built from an argument escapes the *key form* of the value once more; pattern templates do
/// this for you.
///
/// # Examples
///
/// ```
/// assert_eq!(cache_core::escape_glob("user:*"), "user:\\*");
/// ```
pub fn escape_glob(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii() && GLOB_SPECIAL.contains(&(c as u8)) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_escape_table_is_controls_del_and_the_specials() {
        for b in 0..=u8::MAX {
            let expected = b < 0x20 || b == 0x7f || SPECIAL.contains(&b);
            assert_eq!(needs_escape(b), expected, "byte {b:#04x}");
        }
    }
}
