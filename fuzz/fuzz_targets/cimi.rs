#![no_main]
//! See `cms_server::fuzz::cimi`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cms_server::fuzz::cimi(data);
});
