//! Policy files (TOML, SPEC §6) as `sealpack verify --policy` reads them, anchored next to
//! `testdata/policy/example.toml` so that its key paths resolve; plus the glob and duration syntaxes inside.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sealpack::verify::policy::{Glob, MaxAge, Policy};

const NAMES: &[&str] = &[
    "registry.example.com/team/app",
    "registry.example.com/other",
    "localhost:5000/a/b/c",
    "oci:./layout",
    "docker.io/library/alpine",
];

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/policy/fuzz.toml"
    ));
    if let Ok(p) = Policy::from_toml(s, path) {
        assert!(p.keys.iter().all(|k| !k.id.is_empty()));
        for name in NAMES {
            if let Some(r) = p.rule_for(name) {
                assert!(
                    r.covers(name),
                    "rule {:?} chosen for {name} does not cover it",
                    r.scope
                );
            }
        }
        // a scope without wildcards covers exactly itself
        for r in &p.rules {
            if !r.scope.contains(['*', '?']) {
                assert!(r.covers(&r.scope));
            }
        }
        let _ = p.trusted_keys();
    }

    // GLOB \n TEXT
    let (pattern, text) = s.split_once('\n').unwrap_or((s, ""));
    if let Ok(g) = Glob::new(pattern) {
        assert_eq!(g.as_str(), pattern);
        let m = g.matches(text);
        if !pattern.contains(['*', '?']) {
            assert_eq!(m, pattern == text);
        }
        if pattern == "**" {
            assert!(m);
        }
        // wildcards standing for the shortest text they allow: the glob matches it
        let shortest = pattern.replace("**", "").replace('*', "").replace('?', "x");
        assert!(
            g.matches(&shortest),
            "{pattern:?} does not match {shortest:?}"
        );
    }
    if s.len() < 64
        && let Ok(m) = MaxAge::parse(s)
    {
        assert!(m.0.is_positive());
    }
});
