//! `TARGET/.sealpack/history`: append-only, one JSON event per line, written under the target's lock and synced
//! before the command reports success. Reading tolerates a torn last line (a crash mid-append) and caps what it
//! reads.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Most bytes of history read.
const MAX_HISTORY: u64 = 256 << 20;
/// Longest line read; longer ones are skipped.
const MAX_LINE: usize = 64 << 10;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// `current` was switched to a newly verified digest.
    Deploy,
    /// `current` was switched to a digest promoted from another environment.
    Promote,
    /// `current` was switched back to an earlier release.
    Rollback,
    /// A health command ran against the release `current` points at.
    Health,
    /// `current` was found on a release that no event records (a run died after the switch): recorded so.
    Recover,
}

/// One line of history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC.
    pub time: String,
    /// What happened.
    pub action: Action,
    /// The environment.
    pub env: String,
    /// The digest acted on (the one `current` points at after the event, for switches).
    pub digest: Digest,
    /// The pinned reference it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// `org.opencontainers.image.version` of the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The git commit it was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// What `current` pointed at before (switches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Digest>,
    /// Who ran it (user@host, or the CI's actor).
    pub who: String,
    /// `ok`, `pending-health` (a deploy whose health command follows), `passed` / `failed` (health).
    pub status: String,
    /// Why, or what else: the rollback's reason, the health command's exit status, the source environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event {
    /// Whether this event switched `current` to [`Event::digest`].
    pub fn switched(&self) -> bool {
        matches!(
            self.action,
            Action::Deploy | Action::Promote | Action::Rollback | Action::Recover
        )
    }
}

/// Appends one event: a single write of one line with `O_APPEND`, then fsync.
pub fn append(path: &Path, event: &Event) -> Result<()> {
    let mut line = serde_json::to_vec(event).expect("an event serialises");
    line.push(b'\n');
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))?;
    f.write_all(&line)
        .and_then(|()| f.sync_data())
        .map_err(|e| Error::io("appending to", path, e))
}

/// Reads every event, oldest first. Lines that do not parse (a torn last line, a line over 64 KiB) are skipped
/// and counted in the second value.
pub fn read(path: &Path) -> Result<(Vec<Event>, usize)> {
    use std::io::Read;
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(Error::io("opening", path, e)),
    };
    let mut reader = std::io::BufReader::new(f.take(MAX_HISTORY));
    let mut events = Vec::new();
    let mut skipped = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match (line.len() <= MAX_LINE)
            .then(|| serde_json::from_slice::<Event>(&line).ok())
            .flatten()
        {
            Some(e) => events.push(e),
            None => skipped += 1,
        }
    }
    Ok((events, skipped))
}

/// Digests that deployed and passed their health check (or had none), and not failed one since, newest switch
/// first, each once. These are the candidates for a rollback.
pub fn known_good(events: &[Event]) -> Vec<&Event> {
    let mut good: BTreeMap<Digest, bool> = BTreeMap::new();
    for e in events {
        match (e.action, e.status.as_str()) {
            (Action::Health, "passed") => {
                good.insert(e.digest, true);
            }
            (Action::Health, _) => {
                good.insert(e.digest, false);
            }
            (a, "ok") if a != Action::Recover && a != Action::Health => {
                // a switch with no health command (or a rollback onto a release already known good)
                good.entry(e.digest).or_insert(true);
            }
            _ => {}
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    events
        .iter()
        .rev()
        .filter(|e| e.switched() && e.action != Action::Recover)
        .filter(|e| good.get(&e.digest) == Some(&true))
        .filter(|e| seen.insert(e.digest))
        .collect()
}

/// The digest the last switch event recorded, if any.
pub fn last_switched(events: &[Event]) -> Option<Digest> {
    events.iter().rev().find(|e| e.switched()).map(|e| e.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: Action, d: &Digest, status: &str) -> Event {
        Event {
            time: "2026-11-27T10:00:00Z".into(),
            action,
            env: "staging".into(),
            digest: *d,
            reference: None,
            version: None,
            commit: None,
            previous: None,
            who: "t".into(),
            status: status.into(),
            detail: None,
        }
    }

    #[test]
    fn append_and_read_back_skipping_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("history");
        let a = Digest::of(b"a");
        append(&p, &ev(Action::Deploy, &a, "ok")).unwrap();
        append(&p, &ev(Action::Health, &a, "passed")).unwrap();
        // a crash mid-append
        let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"time":"2026-11-27T10:00:00Z","act"#)
            .unwrap();
        let (events, skipped) = read(&p).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(skipped, 1);
        assert_eq!(read(&dir.path().join("none")).unwrap().0.len(), 0);
    }

    #[test]
    fn known_good_excludes_failed_health_and_repeats() {
        let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
        let events = vec![
            ev(Action::Deploy, &a, "ok"),
            ev(Action::Deploy, &b, "pending-health"),
            ev(Action::Health, &b, "passed"),
            ev(Action::Deploy, &c, "pending-health"),
            ev(Action::Health, &c, "failed"),
            ev(Action::Rollback, &b, "ok"),
            ev(Action::Deploy, &a, "ok"),
        ];
        let good: Vec<Digest> = known_good(&events).iter().map(|e| e.digest).collect();
        assert_eq!(good, vec![a, b]);
        assert_eq!(last_switched(&events), Some(a));
        // a release that passed once and failed later is not good any more
        let events = vec![
            ev(Action::Deploy, &a, "pending-health"),
            ev(Action::Health, &a, "passed"),
            ev(Action::Health, &a, "failed"),
        ];
        assert!(known_good(&events).is_empty());
    }
}
