//! Printing: results on stdout, notes, progress and errors on stderr, exit codes.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use sealpack::artifact::Observer;
use sealpack::artifact::inspect::InspectReport;
use sealpack::store::ClientOptions;
use sealpack::{Error, ErrorKind, Result};

/// Exit codes (SPEC §3, docs/EXIT_CODES.md).
pub const EXIT_OPERATIONAL: u8 = 1;
/// Usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Verification denied.
pub const EXIT_DENIED: u8 = 10;

/// The exit code for an error.
pub fn exit_code(e: &Error) -> u8 {
    match e.kind() {
        ErrorKind::Usage => EXIT_USAGE,
        ErrorKind::Operational => EXIT_OPERATIONAL,
        ErrorKind::Denied => EXIT_DENIED,
    }
}

/// Prints `error: ...` and a `hint: ...` line to stderr. The hint is kept even with -q: it is part of the error.
pub fn print_error(e: &Error, _quiet: bool) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {}", sanitize(&e.to_string()));
    if let Some(h) = e.hint() {
        let _ = writeln!(err, "hint: {}", sanitize(&h));
    }
}

/// Replaces control characters (ANSI escapes from hostile names) before printing.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// A result line on stdout. A closed pipe (`| head`) is not an error.
pub fn line(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", sanitize(s)) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("writing", "standard output", e)),
        Ok(()) => Ok(()),
    }
}

/// One JSON document on stdout.
pub fn json<T: serde::Serialize>(v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v).expect("reports serialise");
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{s}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("writing", "standard output", e)),
        Ok(()) => Ok(()),
    }
}

/// A note on stderr.
pub fn note(s: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", sanitize(s));
}

/// `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Progress bars on stderr for transfers over a few MB, only on a terminal and without -q.
pub struct Bars {
    multi: Option<indicatif::MultiProgress>,
}

const BAR_THRESHOLD: u64 = 4 << 20;

impl Bars {
    pub fn new(quiet: bool) -> Self {
        let show = !quiet && std::io::stderr().is_terminal();
        Bars {
            multi: show.then(indicatif::MultiProgress::new),
        }
    }
}

impl Observer for Bars {
    fn transfer(&self, label: &str, total: u64) -> Arc<dyn Fn(u64) + Send + Sync> {
        let Some(multi) = &self.multi else {
            return Arc::new(|_| {});
        };
        if total < BAR_THRESHOLD {
            return Arc::new(|_| {});
        }
        let bar = multi.add(indicatif::ProgressBar::new(total));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_message(sanitize(label));
        Arc::new(move |n| {
            bar.inc(n);
            if bar.position() >= total {
                bar.finish_and_clear();
            }
        })
    }
}

/// Reads `--registry-config`: JSON `{"HOST[:PORT]": {"plain_http": bool, "insecure": bool, "ca_file": PATH}}`.
/// A relative `ca_file` is taken relative to the config file.
pub fn apply_registry_config(path: &Path, opts: &mut ClientOptions) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    if bytes.len() > 1 << 20 {
        return Err(Error::usage(format!(
            "{}: registry config over 1 MiB",
            path.display()
        )));
    }
    let mut hosts: std::collections::BTreeMap<String, sealpack::store::registry::HostOptions> =
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::usage_hint(
                format!("{}: not a registry config: {e}", path.display()),
                r#"expected {"HOST:PORT": {"plain_http": true, "insecure": false, "ca_file": "ca.pem"}}"#,
            )
        })?;
    let base = path.parent().unwrap_or(Path::new("."));
    for h in hosts.values_mut() {
        if let Some(ca) = &h.ca_file
            && ca.is_relative()
        {
            h.ca_file = Some(base.join(ca));
        }
    }
    opts.hosts = hosts;
    Ok(())
}

/// Human-readable `inspect`.
pub fn print_inspect(r: &InspectReport) -> Result<()> {
    let mut s = String::new();
    s.push_str(&format!("Reference:     {}\n", r.reference));
    s.push_str(&format!("Digest:        {}\n", r.digest));
    s.push_str(&format!("Media type:    {}\n", r.media_type));
    if let Some(t) = &r.artifact_type {
        s.push_str(&format!("Artifact type: {t}\n"));
    }
    s.push_str(&format!("Manifest size: {} B\n", r.size));
    if !r.annotations.is_empty() {
        s.push_str("Annotations:\n");
        for (k, v) in &r.annotations {
            s.push_str(&format!("  {k}: {v}\n"));
        }
    }
    s.push_str(&format!(
        "Contents ({} entries, {}):\n",
        r.entries.len(),
        human_bytes(r.total_size)
    ));
    for e in &r.entries {
        let name = e.title.clone().unwrap_or_else(|| "(untitled)".into());
        s.push_str(&format!(
            "  {name}  {}  {}  {}\n",
            human_bytes(e.size),
            e.media_type,
            e.digest
        ));
        if let Some(p) = &e.platform {
            s.push_str(&format!("    platform: {p}\n"));
        }
    }
    s.push_str("Evidence:\n");
    if r.attachments.is_empty() {
        s.push_str("  (none attached)\n");
    }
    for a in &r.attachments {
        s.push_str(&format!(
            "  {}: {} ({} entries) {}\n",
            a.kind, a.tag, a.entries, a.digest
        ));
    }
    line(s.trim_end())
}
