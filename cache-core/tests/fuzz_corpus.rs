//! The fuzz targets' invariants on stable, in every `cargo test`: each input of the kept corpus
//! (`fuzz/corpus/<target>`, grown by `scripts/fuzz`) is replayed, and proptest feeds random and
//! structured inputs to the same entry points (`cache_core::testing::fuzz`). The coverage-guided
//! search itself is `scripts/fuzz` (libFuzzer); this keeps what it found from regressing.

use std::path::PathBuf;

use cache_core::testing::fuzz;
use proptest::prelude::*;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} is missing: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let bytes = std::fs::read(&path).expect("read a corpus input");
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 10, "a kept corpus in {}", dir.display());
    inputs
}

fn replay(target: &str, f: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        let outcome = std::panic::catch_unwind(|| f(&bytes));
        assert!(outcome.is_ok(), "{} fails on {}", target, path.display());
    }
}

#[test]
fn the_envelope_corpus_replays() {
    replay("envelope_decode", fuzz::envelope_decode);
}

#[test]
fn the_key_template_corpus_replays() {
    replay("key_template", fuzz::key_template);
}

/// A template assembled from placeholders and separators, then values with hostile characters:
/// the input layout of [`fuzz::key_template`].
fn template_input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("{a}".to_owned()),
        Just("{b}".to_owned()),
        Just("{c}".to_owned()),
        Just(":".to_owned()),
        Just("user".to_owned()),
        Just("-".to_owned()),
        Just("*".to_owned()),
        Just("{{".to_owned()),
        Just("}}".to_owned()),
        "[a-z:]{0,3}",
    ];
    let value = "[*?:\\[\\]{}\\\\^\n\0aé]{0,6}";
    (
        prop::collection::vec(piece, 0..8),
        prop::collection::vec(value, 0..4),
    )
        .prop_map(|(pieces, values)| {
            let mut out = pieces.concat().into_bytes();
            for v in values {
                out.push(0xFF);
                out.extend_from_slice(v.as_bytes());
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_break_the_envelope_decoder(data in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzz::envelope_decode(&data);
    }

    #[test]
    fn random_bytes_never_break_key_templates(data in prop::collection::vec(any::<u8>(), 0..128)) {
        fuzz::key_template(&data);
    }

    #[test]
    fn structured_templates_keep_keys_injective_and_patterns_literal(data in template_input()) {
        fuzz::key_template(&data);
    }
}
