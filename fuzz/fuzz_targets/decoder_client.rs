#![no_main]

use libfuzzer_sys::fuzz_target;
use syncws::protocol::Role;

fuzz_target!(|data: &[u8]| syncws_fuzz::decoder::check(Role::Client, data));
