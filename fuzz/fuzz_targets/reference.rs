//! References (`HOST[:PORT]/REPO[:TAG][@DIGEST]`, `oci:PATH[:TAG|@DIGEST]`) and digests, as typed by a user or
//! read from a registry (`docker-reference` in a signature payload, an index's `ref.name`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealpack::Reference;
use sealpack::digest::Digest;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(d) = Digest::parse(s) {
        // only the canonical spelling parses, so it prints back as it was written
        assert_eq!(d.to_string(), s);
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
    }

    let Ok(r) = Reference::parse(s) else {
        return;
    };
    // parse -> to_string -> parse is stable: same repository, same pin (a digest wins over a tag)
    let shown = r.to_string();
    let again = Reference::parse(&shown)
        .unwrap_or_else(|e| panic!("{s:?} parsed, but its display {shown:?} did not: {e}"));
    assert_eq!(again.to_string(), shown, "display of {s:?}");
    assert_eq!(again.repository_name(), r.repository_name(), "{s:?}");
    assert_eq!(again.digest(), r.digest(), "{s:?}");
    if r.digest().is_none() {
        assert_eq!(again.tag(), r.tag(), "{s:?}");
        assert_eq!(again, r, "{s:?}");
    }
    // the derived forms parse too
    let pinned = r.pinned(Digest::of(data));
    assert_eq!(Reference::parse(&pinned.to_string()).unwrap(), pinned);
    let tagged = r.with_tag("latest");
    assert_eq!(Reference::parse(&tagged.to_string()).unwrap(), tagged);
});
