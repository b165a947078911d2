#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| syncws_fuzz::handshake::check_request(data));
