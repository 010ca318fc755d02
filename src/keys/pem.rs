//! Strict PEM framing (RFC 7468) for key files.
//!
//! Go's `encoding/pem` (which cosign uses) is lenient: it skips text before the first block,
//! ignores everything after it and allows RFC 1421 headers. A file holding a trusted key followed
//! by an attacker's key would then mean "the first one" to Go and maybe "the last one" to another
//! reader.
//! We accept exactly one block, with nothing but whitespace around it and no headers.

use zeroize::Zeroizing;

/// One decoded PEM block. The DER is zeroized on drop because it may be a private key.
pub(crate) struct PemBlock {
    pub(crate) label: String,
    pub(crate) der: Zeroizing<Vec<u8>>,
}

/// Decodes the single PEM block in `input`; the error is a human-readable reason.
pub(crate) fn decode_single(input: &[u8]) -> Result<PemBlock, String> {
    let text = input.trim_ascii();
    if text.is_empty() {
        return Err("no PEM block found (the input is empty)".into());
    }
    if !text.is_ascii() {
        return Err("the input contains non-ASCII bytes; expected one PEM block".into());
    }
    let begins = count(text, b"-----BEGIN ");
    let ends = count(text, b"-----END ");
    if begins == 0 {
        return Err("no PEM block found (no -----BEGIN line)".into());
    }
    if begins != 1 || ends != 1 {
        return Err(format!(
            "found {begins} BEGIN and {ends} END lines; expected exactly one PEM block"
        ));
    }
    if !text.starts_with(b"-----BEGIN ") {
        return Err("unexpected data before the PEM block".into());
    }
    if !text.ends_with(b"-----") {
        return Err("unexpected data after the PEM block".into());
    }
    // Base64 never contains ':', so one anywhere means RFC 1421 headers such as `Proc-Type:`
    // (legacy OpenSSL encryption) or garbage.
    if text.contains(&b':') {
        return Err("PEM headers (e.g. Proc-Type, DEK-Info) are not allowed".into());
    }
    let mut decoder =
        pem_rfc7468::Decoder::new_detect_wrap(text).map_err(|e| format!("invalid PEM: {e}"))?;
    let label = decoder.type_label().to_owned();
    // Reserve the whole output up front so that decoding never reallocates and leaves an
    // un-zeroized copy of a private key behind.
    let mut der = Zeroizing::new(Vec::with_capacity(decoder.remaining_len()));
    decoder
        .decode_to_end(&mut der)
        .map_err(|e| format!("invalid PEM body: {e}"))?;
    if der.is_empty() {
        return Err(format!("the {label} PEM block is empty"));
    }
    Ok(PemBlock { label, der })
}

/// Encodes `der` as one PEM block with LF line endings and 64-column lines, as Go's
/// `pem.EncodeToMemory` does.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(
        body.len()
            .saturating_add(body.len() / 64)
            .saturating_add(label.len().saturating_mul(2))
            .saturating_add(40),
    );
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII, so each byte is one char.
        out.extend(line.iter().map(|&b| char::from(b)));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}
