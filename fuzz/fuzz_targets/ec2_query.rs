#![no_main]
//! See `cms_server::fuzz::ec2_query`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cms_server::fuzz::ec2_query(data);
});
