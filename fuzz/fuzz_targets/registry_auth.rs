//! A registry's `WWW-Authenticate` challenge (the header that decides where credentials and token requests go),
//! and the bearer token response body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealpack::store::registry::{Challenge, parse_challenge};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match parse_challenge(s) {
        Some(Challenge::Bearer { realm, service }) => {
            // values are taken from the header as written, never invented
            assert!(s.contains(realm.as_str()));
            if let Some(svc) = service {
                assert!(s.contains(svc.as_str()));
            }
            assert!(
                s.trim_start()
                    .get(..6)
                    .is_some_and(|p| p.eq_ignore_ascii_case("bearer"))
            );
        }
        Some(Challenge::Basic) => {
            assert!(
                s.trim_start()
                    .get(..5)
                    .is_some_and(|p| p.eq_ignore_ascii_case("basic"))
            );
        }
        None => {}
    }
});
