#![no_main]
//! See `cms_server::fuzz::native`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cms_server::fuzz::native(data);
});
