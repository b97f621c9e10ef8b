#![no_main]
//! See `cms_driver_opennebula::fuzz::xmlrpc`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cms_driver_opennebula::fuzz::xmlrpc(data);
});
