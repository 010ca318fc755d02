//! Manifests and indexes as a registry or a layout folder serves them: the exact bytes with the Content-Type the
//! store claimed. The first byte picks the claimed media type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealpack::oci::{Descriptor, ImageIndex, ImageManifest, Manifest, RawManifest, media};
use sha2::{Digest as _, Sha256};

/// `platform` is free JSON; serde_json reads floats to within one ulp only, so it is left out of round-trip
/// comparisons.
fn without_platform(d: &mut Descriptor) {
    d.platform = None;
}

fn image_view(m: &ImageManifest) -> ImageManifest {
    let mut m = m.clone();
    without_platform(&mut m.config);
    m.layers.iter_mut().for_each(without_platform);
    m.subject.iter_mut().for_each(without_platform);
    m
}

fn index_view(i: &ImageIndex) -> ImageIndex {
    let mut i = i.clone();
    i.manifests.iter_mut().for_each(without_platform);
    i.subject.iter_mut().for_each(without_platform);
    i
}

const TYPES: &[&str] = &[
    "",
    media::OCI_MANIFEST,
    media::OCI_INDEX,
    media::DOCKER_MANIFEST,
    media::DOCKER_LIST,
    "application/json",
    "text/plain",
    "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let claimed = TYPES[usize::from(sel) % TYPES.len()];
    let raw = match RawManifest::new(claimed, bytes.to_vec()) {
        Ok(raw) => raw,
        Err(_) => {
            assert!(bytes.len() > sealpack::oci::MAX_MANIFEST_BYTES);
            return;
        }
    };
    // the digest is computed from the bytes, never taken from anyone
    let expected = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    assert_eq!(raw.digest().to_string(), expected);
    assert_eq!(raw.bytes().as_ref(), bytes);
    let desc = raw.descriptor();
    assert_eq!(desc.size, bytes.len() as u64);
    assert_eq!(desc.digest, raw.digest());
    assert!(raw.check_digest("fuzz", &raw.digest()).is_ok());

    let Ok(parsed) = raw.parse() else {
        return;
    };
    // the typed view survives a round trip through its own serialisation
    match &parsed {
        Manifest::Image(m) => {
            assert!(m.layers.len() <= sealpack::oci::MAX_DESCRIPTORS);
            let json = serde_json::to_vec(m).unwrap();
            let back: ImageManifest = serde_json::from_slice(&json).unwrap();
            assert_eq!(image_view(&back), image_view(m));
            let rebuilt = RawManifest::from_image(m).unwrap();
            if let Ok(Manifest::Image(again)) = rebuilt.parse() {
                assert_eq!(image_view(&again), image_view(m));
            }
        }
        Manifest::Index(i) => {
            assert!(i.manifests.len() <= sealpack::oci::MAX_DESCRIPTORS);
            let json = serde_json::to_vec(i).unwrap();
            let back: ImageIndex = serde_json::from_slice(&json).unwrap();
            assert_eq!(index_view(&back), index_view(i));
        }
    }
});
