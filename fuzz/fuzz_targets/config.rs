#![no_main]
//! See `cms_server::fuzz::config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cms_server::fuzz::config(data);
});
