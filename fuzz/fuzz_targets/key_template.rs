//! Key templates and argument values: no panic, distinct arguments give distinct keys, no
//! argument acts as a glob wildcard.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cache_core::testing::fuzz::key_template(data);
});
