//! Property tests of key rendering: distinct argument tuples never share a key, and no argument
//! value acts as a glob wildcard.

use cache_core::{Glob, escape_glob, escape_key_part};
use proptest::prelude::*;

/// A two-placeholder template `"{a}:{b}"`, rendered as the macros render it.
fn render(a: &str, b: &str) -> String {
    format!("{}:{}", escape_key_part(a), escape_key_part(b))
}

proptest! {
    #[test]
    fn distinct_argument_tuples_never_share_a_key(a1 in ".*", b1 in ".*", a2 in ".*", b2 in ".*") {
        prop_assume!((&a1, &b1) != (&a2, &b2));
        prop_assert_ne!(render(&a1, &b1), render(&a2, &b2));
    }

    #[test]
    fn hostile_characters_still_never_collide(a1 in "[*?:\\[\\]{}\\\\\n\0a]{0,6}", b1 in "[*?:\\[\\]{}\\\\\n\0a]{0,6}", a2 in "[*?:\\[\\]{}\\\\\n\0a]{0,6}", b2 in "[*?:\\[\\]{}\\\\\n\0a]{0,6}") {
        prop_assume!((&a1, &b1) != (&a2, &b2));
        prop_assert_ne!(render(&a1, &b1), render(&a2, &b2));
    }

    #[test]
    fn an_argument_in_a_pattern_matches_only_itself(value in ".{0,12}", other in ".{0,12}") {
        let pattern = format!("user:{}:*", escape_glob(&escape_key_part(&value)));
        let glob = Glob::new(&pattern);
        let own = format!("user:{}:videos", escape_key_part(&value));
        prop_assert!(glob.matches(&own));
        if other != value {
            let theirs = format!("user:{}:videos", escape_key_part(&other));
            prop_assert!(!glob.matches(&theirs));
        }
    }
}
