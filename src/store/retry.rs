//! Retries and timeouts for registry requests: which failures are worth another attempt, how long to wait
//! (capped exponential backoff with full jitter, or the registry's `Retry-After`), the total time budget for one
//! command, and a low-speed watchdog for response bodies.
//!
//! The registry client ([`super::registry`]) decides *what* it may repeat (idempotent requests and blob upload
//! sessions); this module decides *whether* and *when*.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;

use crate::error::{Error, Result};

/// Fewer bytes than this within one low-speed window fails the transfer.
pub const LOW_SPEED_MIN_BYTES: u64 = 1024;

/// How the registry client retries and times out. Defaults suit real networks; tests shrink them through the
/// environment (see [`RetryOptions::from_env`]).
#[derive(Debug, Clone)]
pub struct RetryOptions {
    /// Time within which retries may happen, counted from the client's creation (one command). No retry starts
    /// when its wait would end past the budget; the first attempt of a request is always made.
    pub budget: Duration,
    /// Most attempts for one request, the first included.
    pub max_attempts: u32,
    /// Backoff ceiling after the first failure; it doubles per failure up to [`RetryOptions::max_delay`], and
    /// the actual wait is drawn uniformly between zero and the ceiling (full jitter).
    pub base_delay: Duration,
    /// Highest backoff ceiling.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured (a registry asking for more is waited on for this long).
    pub max_retry_after: Duration,
    /// A response head that takes longer than this, a response body that delivers fewer than
    /// [`LOW_SPEED_MIN_BYTES`] in this long, or an upload the registry stops reading for this long, fails.
    pub low_speed_timeout: Duration,
    /// TCP and TLS connect timeout.
    pub connect_timeout: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            budget: Duration::from_secs(300),
            max_attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
            low_speed_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// Environment variables read by [`RetryOptions::from_env`].
pub const ENV_RETRY_BUDGET: &str = "SEALPACK_RETRY_BUDGET";
/// Most attempts per request.
pub const ENV_RETRY_MAX_ATTEMPTS: &str = "SEALPACK_RETRY_MAX_ATTEMPTS";
/// Low-speed timeout.
pub const ENV_LOW_SPEED_TIMEOUT: &str = "SEALPACK_LOW_SPEED_TIMEOUT";
/// Connect timeout.
pub const ENV_CONNECT_TIMEOUT: &str = "SEALPACK_CONNECT_TIMEOUT";

impl RetryOptions {
    /// The defaults, overridden by `SEALPACK_RETRY_BUDGET`, `SEALPACK_RETRY_MAX_ATTEMPTS`,
    /// `SEALPACK_LOW_SPEED_TIMEOUT` and `SEALPACK_CONNECT_TIMEOUT` as `get` returns them (durations like `2s`,
    /// `500ms`, `5m`; a bare number is seconds). A value that does not parse is a usage error.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut o = RetryOptions::default();
        let duration = |name: &str, slot: &mut Duration| -> Result<()> {
            if let Some(v) = get(name) {
                *slot = parse_duration(&v).ok_or_else(|| {
                    Error::usage_hint(
                        format!("{name}={v:?} is not a duration"),
                        "write it like 30s, 500ms, 5m or a number of seconds",
                    )
                })?;
            }
            Ok(())
        };
        duration(ENV_RETRY_BUDGET, &mut o.budget)?;
        duration(ENV_LOW_SPEED_TIMEOUT, &mut o.low_speed_timeout)?;
        duration(ENV_CONNECT_TIMEOUT, &mut o.connect_timeout)?;
        if let Some(v) = get(ENV_RETRY_MAX_ATTEMPTS) {
            o.max_attempts = v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    Error::usage(format!(
                        "{ENV_RETRY_MAX_ATTEMPTS}={v:?} is not a whole number of at least 1"
                    ))
                })?;
        }
        if o.low_speed_timeout.is_zero() || o.connect_timeout.is_zero() {
            return Err(Error::usage(format!(
                "{ENV_LOW_SPEED_TIMEOUT} and {ENV_CONNECT_TIMEOUT} must be more than zero"
            )));
        }
        Ok(o)
    }

    /// The wait before attempt `failures + 1`: the registry's `Retry-After` (capped) when it sent one, else a
    /// random duration up to the backoff ceiling for this many failures.
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_retry_after);
        }
        let exp = failures.saturating_sub(1).min(20);
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let mut r = [0u8; 8];
        // no randomness is no reason to fail a request: fall back to the clock's low bits
        if getrandom::fill(&mut r).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default();
            r = (nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id()))
                .to_le_bytes();
        }
        let frac = (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(frac)
    }
}

/// The time budget of one command's requests.
#[derive(Debug)]
pub struct Budget {
    started: Instant,
    opts: RetryOptions,
}

impl Budget {
    /// Starts the clock now.
    pub fn start(opts: RetryOptions) -> Self {
        Budget {
            started: Instant::now(),
            opts,
        }
    }

    /// The settings.
    pub fn options(&self) -> &RetryOptions {
        &self.opts
    }

    /// After `attempts` attempts failed with a transient error: `Ok(wait)` to try again after `wait`, or
    /// `Err(why not)`.
    pub fn next(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
    ) -> std::result::Result<Duration, String> {
        if attempts >= self.opts.max_attempts {
            return Err(format!(
                "{attempts} attempt{} is the most allowed ({ENV_RETRY_MAX_ATTEMPTS})",
                plural(attempts)
            ));
        }
        let wait = self.delay_for(attempts, retry_after);
        let elapsed = self.started.elapsed();
        if elapsed + wait > self.opts.budget {
            return Err(format!(
                "waiting {} more would pass the {} retry budget ({ENV_RETRY_BUDGET})",
                human(wait),
                human(self.opts.budget)
            ));
        }
        Ok(wait)
    }

    fn delay_for(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        self.opts.delay(attempts, retry_after)
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A duration for messages: `250ms`, `2s`, `1.5s`, `5m`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Parses `500ms`, `2s`, `1.5s`, `5m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && (0.0..=1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// The wait a `Retry-After` header asks for: delay-seconds, or an HTTP date (RFC 9110 §10.2.3). A date in the
/// past is no wait; junk is ignored (the caller backs off instead).
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let d = when - now;
    Some(if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
    })
}

/// Whether an HTTP status is worth another attempt: request timeout, too many requests, and server errors other
/// than "not implemented" and "HTTP version not supported".
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429) || (500..600).contains(&status) && !matches!(status, 501 | 505)
}

/// Whether a transport failure (its flattened message) may pass on its own: resets, timeouts, refused or
/// dropped connections do; TLS trust failures, a plain-HTTP answer to HTTPS, unknown host names and refused
/// redirects do not.
pub fn transient_transport(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ![
        "certificate",
        "unknownissuer",
        "invalidcontenttype",
        "corrupt message",
        "dns error",
        "failed to lookup",
        "redirect",
        "builder error",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// A response body stream that fails when fewer than [`LOW_SPEED_MIN_BYTES`] arrive within a window (a
/// registry dripping bytes, or gone silent without closing).
pub struct LowSpeed<S> {
    inner: S,
    url: String,
    window: Duration,
    got: u64,
    timer: Pin<Box<tokio::time::Sleep>>,
    failed: bool,
}

impl<S> LowSpeed<S> {
    /// Watches `inner`, which streams `url`.
    pub fn new(inner: S, url: String, window: Duration) -> Self {
        LowSpeed {
            inner,
            url,
            window,
            got: 0,
            timer: Box::pin(tokio::time::sleep(window)),
            failed: false,
        }
    }
}

/// The error a stalled transfer ends with.
pub fn low_speed_error(url: &str, window: Duration) -> Error {
    Error::Transport {
        url: url.to_string(),
        message: format!(
            "low-speed timeout: fewer than {LOW_SPEED_MIN_BYTES} bytes in {} ({ENV_LOW_SPEED_TIMEOUT})",
            human(window)
        ),
        hint: Some("the registry or the network stalled; try again later"),
    }
}

impl<S, E> Stream for LowSpeed<S>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                this.got += b.len() as u64;
                return Poll::Ready(Some(Ok(b)));
            }
            Poll::Ready(Some(Err(e))) => {
                return Poll::Ready(Some(Err(std::io::Error::other(e))));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        loop {
            match this.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    if this.got < LOW_SPEED_MIN_BYTES {
                        this.failed = true;
                        return Poll::Ready(Some(Err(
                            low_speed_error(&this.url, this.window).into_io()
                        )));
                    }
                    this.got = 0;
                    let next = tokio::time::Instant::now() + this.window;
                    this.timer.as_mut().reset(next);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "s", "2 days", "-1s", "1e999"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_secs(2)), "2s");
        assert_eq!(human(Duration::from_secs(300)), "5m");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_795_773_600).unwrap(); // 2026-11-27 10:00:00 UTC
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 10:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        // capped when used
        let o = RetryOptions::default();
        assert_eq!(
            o.delay(1, Some(Duration::from_secs(999_999))),
            o.max_retry_after
        );
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let o = RetryOptions::default();
        for failures in 1..30 {
            let d = o.delay(failures, None);
            let exp = (failures - 1).min(20);
            let ceiling = o.base_delay.saturating_mul(1 << exp).min(o.max_delay);
            assert!(d <= ceiling, "{failures}: {d:?} > {ceiling:?}");
        }
        let draws: std::collections::BTreeSet<_> = (0..20).map(|_| o.delay(5, None)).collect();
        assert!(draws.len() > 1, "no jitter");
    }

    #[test]
    fn budget_and_attempts_end_retries() {
        let b = Budget::start(RetryOptions {
            max_attempts: 3,
            ..RetryOptions::default()
        });
        assert!(b.next(1, Some(Duration::from_millis(1))).is_ok());
        assert!(b.next(3, None).unwrap_err().contains("3 attempts"));
        let b = Budget::start(RetryOptions {
            budget: Duration::from_secs(2),
            ..RetryOptions::default()
        });
        let why = b.next(1, Some(Duration::from_secs(30))).unwrap_err();
        assert!(why.contains("2s retry budget"), "{why}");
    }

    #[test]
    fn classification() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 416, 501, 505] {
            assert!(!retryable_status(s), "{s}");
        }
        assert!(transient_transport(
            "error sending request: connection reset by peer"
        ));
        assert!(!transient_transport(
            "invalid peer certificate: UnknownIssuer"
        ));
        assert!(!transient_transport(
            "error following redirect: refusing a redirect from https to http"
        ));
    }

    #[test]
    fn env_overrides_and_refuses_junk() {
        let o = RetryOptions::from_env(|k| match k {
            ENV_RETRY_BUDGET => Some("2s".into()),
            ENV_LOW_SPEED_TIMEOUT => Some("1s".into()),
            ENV_RETRY_MAX_ATTEMPTS => Some("3".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(o.budget, Duration::from_secs(2));
        assert_eq!(o.low_speed_timeout, Duration::from_secs(1));
        assert_eq!(o.max_attempts, 3);
        let e = RetryOptions::from_env(|k| (k == ENV_RETRY_BUDGET).then(|| "soon".into()));
        assert!(e.unwrap_err().to_string().contains(ENV_RETRY_BUDGET));
        assert!(
            RetryOptions::from_env(|k| (k == ENV_RETRY_MAX_ATTEMPTS).then(|| "0".into())).is_err()
        );
    }

    #[tokio::test]
    async fn low_speed_fails_a_drip() {
        use futures_util::StreamExt;
        // one byte every 50 ms against a 300 ms window
        let drip = futures_util::stream::unfold(0u32, |n| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            (n < 100).then(|| (Ok::<_, std::io::Error>(Bytes::from_static(b"x")), n + 1))
        });
        let mut s = LowSpeed::new(Box::pin(drip), "u".into(), Duration::from_millis(300));
        let mut got = 0;
        let err = loop {
            match s.next().await {
                Some(Ok(b)) => got += b.len(),
                Some(Err(e)) => break e,
                None => panic!("drip finished"),
            }
        };
        assert!(got < 20, "{got}");
        assert!(err.to_string().contains("low-speed"), "{err}");
        // a fast stream passes
        let fast = futures_util::stream::iter(
            (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 4096]))),
        );
        let n: usize = LowSpeed::new(fast, "u".into(), Duration::from_secs(1))
            .map(|r| r.unwrap().len())
            .fold(0, |a, b| async move { a + b })
            .await;
        assert_eq!(n, 40960);
    }
}
