//! Bytes read from Redis, decoded as cached values: never a panic, never a wrong value.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cache_core::testing::fuzz::envelope_decode(data);
});
