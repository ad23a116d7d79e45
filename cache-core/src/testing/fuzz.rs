//! Fuzz entry points: what the fuzz targets in `fuzz/` (libFuzzer) and the corpus-replay and
//! random-input tests run, so the invariants live next to the code they guard and every driver
//! checks the same ones.
//!
//! Each function takes arbitrary bytes and panics only when an invariant is broken; any panic
//! from inside the library is a bug too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Glob;
use crate::key::template::{Part, Render, Template};
use crate::remote::envelope::{self, HEADER_LEN};

/// A struct with named fields and nesting, as application values are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: Option<f64>,
    nested: BTreeMap<String, Vec<u8>>,
}

/// The time decodes are checked against: fixed, so a run replays exactly.
const NOW_MS: u64 = 1_700_000_000_000;

/// Decodes `data` as a stored value, under every type the fuzzer cares about, both as it is and
/// behind a valid header (so the fuzzer reaches the payload decoders without having to guess a
/// hash). Invariants: no panic; a value that decodes re-encodes to bytes that decode to the same
/// value; the header check alone (`peek_meta`) agrees with a full decode.
///
/// ```
/// cache_core::testing::fuzz::envelope_decode(b"\xca\xc5\x01\x00 not a real envelope");
/// ```
pub fn envelope_decode(data: &[u8]) {
    let key = "fuzz:key";
    decode_as::<String>(key, data);
    decode_as::<Vec<u64>>(key, data);
    decode_as::<Record>(key, data);
    decode_as::<(u8, Option<String>)>(key, data);
    let _ = envelope::peek_meta(key, data, NOW_MS);

    // The same bytes as the payload of a valid header for each type; the first byte picks the
    // flags (plain or LZ4), the rest is the payload.
    let (flags, payload) = match data.split_first() {
        Some((f, rest)) => (f & 1, rest),
        None => (0, data),
    };
    decode_as::<String>(key, &with_header::<String>(key, flags, payload));
    decode_as::<Vec<u64>>(key, &with_header::<Vec<u64>>(key, flags, payload));
    decode_as::<Record>(key, &with_header::<Record>(key, flags, payload));
}

fn with_header<T>(key: &str, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&[0xCA, 0xC5, envelope::VERSION, flags]);
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(key.as_bytes()).to_be_bytes());
    out.extend_from_slice(&envelope::type_fingerprint::<T>().to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn decode_as<T>(key: &str, bytes: &[u8])
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    let Ok((value, meta)) = envelope::decode::<T>(key, bytes, NOW_MS) else {
        return;
    };
    assert_eq!(
        envelope::peek_meta(key, bytes, NOW_MS),
        Ok(meta),
        "the header check disagrees with a full decode"
    );
    let again = envelope::encode(key, &value, meta, 64).expect("a decoded value encodes");
    let (back, meta_back) =
        envelope::decode::<T>(key, &again, NOW_MS).expect("a re-encoded value decodes");
    // NaN is not equal to itself; compare what can be compared.
    if format!("{value:?}").contains("NaN") {
        return;
    }
    assert_eq!(back, value, "re-encoding changed the value");
    assert_eq!(meta_back, meta);
}

/// Parses `data` as a run-time key template followed by argument values, renders it as a key
/// and as a pattern, and checks:
/// - parsing and rendering never panic, and rendering is deterministic;
/// - when every literal between two placeholders contains a `:` (an escaped character) and no
///   literal contains a `\`, two different sets of argument values render to different keys;
/// - when no literal holds a glob metacharacter, the pattern rendered from some values matches
///   the key rendered from the same values and no key rendered from other values (no argument
///   acts as a wildcard).
///
/// Input layout: the template, then each argument value, separated by `0xFF` bytes (never valid
/// UTF-8, so the fuzzer's values can hold any character); invalid UTF-8 inside a part is replaced.
///
/// ```
/// cache_core::testing::fuzz::key_template(b"user:{id}:{name}\xff4*2\xffa:b");
/// ```
pub fn key_template(data: &[u8]) {
    let mut parts = data.split(|&b| b == 0xFF);
    let source = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let values: Vec<String> = parts
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let Ok(template) = Template::parse(&source) else {
        return;
    };
    let names: Vec<&str> = template.placeholders().collect();
    // Each distinct placeholder name gets the next value (empty when the input ran out).
    let mut distinct: Vec<&str> = Vec::new();
    for n in &names {
        if !distinct.contains(n) {
            distinct.push(n);
        }
    }
    let assign = |vals: &[String]| -> BTreeMap<String, String> {
        distinct
            .iter()
            .enumerate()
            .map(|(i, n)| ((*n).to_owned(), vals.get(i).cloned().unwrap_or_default()))
            .collect()
    };
    let render = |mode: Render, args: &BTreeMap<String, String>| {
        template
            .render(mode, |n| args.get(n).map(String::as_str))
            .expect("every placeholder has a value")
    };
    let args = assign(&values);
    let key = render(Render::Key, &args);
    assert_eq!(
        key,
        render(Render::Key, &args),
        "rendering is deterministic"
    );
    let pattern = render(Render::Pattern, &args);
    if distinct.is_empty() {
        return;
    }

    // Other values: each variant changes one placeholder's value.
    let mut variants: Vec<Vec<String>> = Vec::new();
    for i in 0..distinct.len() {
        let mut v: Vec<String> = (0..distinct.len())
            .map(|j| values.get(j).cloned().unwrap_or_default())
            .collect();
        for suffix in ["", ":", "*", "\\", "x"] {
            let mut w = v.clone();
            w[i].push_str(suffix);
            if w != v {
                variants.push(w);
            }
        }
        // Move a character across the boundary to the next placeholder, the classic collision.
        if i + 1 < distinct.len()
            && let Some(c) = v[i].pop()
        {
            v[i + 1].insert(0, c);
            variants.push(v);
        }
    }

    let lits: Vec<&str> = template
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::Lit(s) => Some(s.as_str()),
            Part::Arg(_) => None,
        })
        .collect();
    let separated = separators_escape(&template.parts) && lits.iter().all(|l| !l.contains('\\'));
    let literal_pattern = lits
        .iter()
        .all(|l| !l.contains(['*', '?', '[', ']', '\\', '^']));
    let glob = Glob::new(&pattern);
    if literal_pattern {
        assert!(glob.matches(&key), "{pattern:?} must match {key:?}");
    }
    let base: Vec<String> = (0..distinct.len())
        .map(|j| values.get(j).cloned().unwrap_or_default())
        .collect();
    for other in variants {
        if other == base {
            continue;
        }
        let other_key = render(Render::Key, &assign(&other));
        if separated {
            assert_ne!(
                key, other_key,
                "distinct arguments {base:?} and {other:?} share a key"
            );
        }
        if literal_pattern && other_key != key {
            assert!(
                !glob.matches(&other_key),
                "the pattern {pattern:?} from {base:?} also matches {other_key:?} from {other:?}"
            );
        }
    }
}

/// True when every literal standing between two placeholders contains a `:`, which argument
/// values always escape, so the boundary between two values can be found again.
fn separators_escape(parts: &[Part]) -> bool {
    let mut seen_arg = false;
    let mut lit_since_arg: Option<&str> = None;
    for p in parts {
        match p {
            Part::Arg(_) => {
                if seen_arg && !lit_since_arg.is_some_and(|l| l.contains(':')) {
                    return false;
                }
                seen_arg = true;
                lit_since_arg = None;
            }
            Part::Lit(l) => lit_since_arg = Some(l),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_placeholders_are_not_claimed_injective() {
        let t = Template::parse("{a}{b}").unwrap();
        assert!(!separators_escape(&t.parts));
        let t = Template::parse("{a}-{b}").unwrap();
        assert!(!separators_escape(&t.parts), "`-` is not escaped in values");
        let t = Template::parse("x{a}:{b}y").unwrap();
        assert!(separators_escape(&t.parts));
    }

    #[test]
    fn the_examples_hold() {
        key_template(b"user:{id}:{name}\xff4*2\xffa:b");
        key_template(b"{a}:{a}:{b}\xff1\xff2");
        envelope_decode(b"");
        envelope_decode(&[0xCA, 0xC5, 1, 1, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
}
