#![no_main]
//! See `cms_server::fuzz::sigv4`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cms_server::fuzz::sigv4(data);
});
