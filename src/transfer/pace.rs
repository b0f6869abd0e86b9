//! Bandwidth caps (`max_rate` per intersection, `transfer.max_rate_total`
//! for the pass): token buckets the engine asks before each READ.
//!
//! The engine paces the READ requests it sends, not the socket: a READ
//! is sent only while the buckets are not in debt, and its length is
//! taken from them at once (a bucket may go into debt by one READ), so
//! over any stretch longer than a few READs the file bytes read per second
//! are the cap. Nothing waits inside a request: every request sent is
//! answered as fast as the link allows, so a cap never makes a single call
//! slow enough for `transfer.io_timeout`, and data keeps arriving (READs
//! of at most an eighth of a second's worth under a cap), so progress never
//! stops for long.
//!
//! What is capped is file bytes. SSH adds a few percent of framing on the
//! wire, and SSH compression takes bytes off (CSV about 3.8x), so the link
//! carries about the cap or less.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A token bucket of `rate` bytes per second.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    /// Balance in bytes may go negative (debt) by one READ; it is capped
    /// at `burst` while idle: a long pause is not made up by a long burst,
    /// while a short stall (a slow fsync, a busy CPU) is, so the average
    /// stays the cap.
    state: Mutex<(f64, Instant)>,
    burst: f64,
}

impl Bucket {
    pub fn new(rate: u64) -> Bucket {
        let rate = rate.max(1) as f64;
        // A second's worth: what a stall of every reader at once (a busy
        // CPU, slow fsyncs, a remote hash awaited) would otherwise lose.
        let burst = rate.max(4096.0);
        Bucket {
            rate,
            // Starts empty: a pass does not open with a burst.
            state: Mutex::new((0.0, Instant::now())),
            burst,
        }
    }

    /// How long until the balance is positive again (zero: now).
    fn wait(&self, now: Instant) -> Duration {
        let Ok(mut s) = self.state.lock() else {
            return Duration::ZERO;
        };
        let (balance, last) = *s;
        let balance = (balance + now.saturating_duration_since(last).as_secs_f64() * self.rate)
            .min(self.burst);
        *s = (balance, now);
        if balance > 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-balance / self.rate).max(Duration::from_millis(1))
        }
    }

    fn take(&self, n: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.0 -= n as f64;
        }
    }
}

/// The caps one intersection's reads are held to: its own and the pass's.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    own: Option<Arc<Bucket>>,
    total: Option<Arc<Bucket>>,
}

impl Pacer {
    /// `own`: this intersection's `max_rate`; `total`: the bucket the whole
    /// pass shares (`transfer.max_rate_total`).
    pub fn new(own: Option<u64>, total: Option<Arc<Bucket>>) -> Pacer {
        Pacer {
            own: own.map(|r| Arc::new(Bucket::new(r))),
            total,
        }
    }

    pub fn unlimited() -> Pacer {
        Pacer::default()
    }

    pub fn is_limited(&self) -> bool {
        self.own.is_some() || self.total.is_some()
    }

    /// The READ length to use under the caps: an eighth of a second's
    /// worth (at least 8 KiB), at most `max`, so data keeps flowing evenly.
    pub fn chunk(&self, max: u32) -> u32 {
        let rate = [&self.own, &self.total]
            .into_iter()
            .flatten()
            .map(|b| b.rate)
            .fold(f64::INFINITY, f64::min);
        if rate.is_finite() {
            ((rate / 8.0) as u64).clamp(8192, u64::from(max)) as u32
        } else {
            max
        }
    }

    /// Takes `n` bytes if no bucket is in debt, else says how long to wait.
    ///
    /// # Errors
    /// The wait until every bucket is out of debt; nothing was taken.
    pub fn try_take(&self, n: u64) -> Result<(), Duration> {
        let now = Instant::now();
        let wait = [&self.own, &self.total]
            .into_iter()
            .flatten()
            .map(|b| b.wait(now))
            .max()
            .unwrap_or(Duration::ZERO);
        if !wait.is_zero() {
            return Err(wait);
        }
        for b in [&self.own, &self.total].into_iter().flatten() {
            b.take(n);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes as fast as allowed for `secs` and returns bytes per second.
    fn drive(p: &Pacer, n: u64, secs: f64) -> f64 {
        let start = Instant::now();
        let mut taken = 0u64;
        while start.elapsed().as_secs_f64() < secs {
            match p.try_take(n) {
                Ok(()) => taken += n,
                Err(w) => std::thread::sleep(w),
            }
        }
        taken as f64 / start.elapsed().as_secs_f64()
    }

    #[test]
    fn a_capped_pacer_averages_its_rate() {
        let p = Pacer::new(Some(4 << 20), None);
        let chunk = p.chunk(255 << 10);
        assert_eq!(
            chunk,
            255 << 10,
            "an eighth of a second's worth, capped at max"
        );
        let rate = drive(&p, u64::from(chunk), 1.5);
        let want = f64::from(4u32 << 20);
        assert!((rate - want).abs() / want < 0.1, "{rate} vs {want}");
    }

    #[test]
    fn a_shared_bucket_caps_the_sum() {
        let total = Arc::new(Bucket::new(2 << 20));
        let rates: Vec<f64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let p = Pacer::new(Some(8 << 20), Some(total.clone()));
                    s.spawn(move || drive(&p, 64 << 10, 1.0))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let sum: f64 = rates.iter().sum();
        let want = f64::from(2u32 << 20);
        assert!(
            (sum - want).abs() / want < 0.15,
            "{rates:?}: {sum} vs {want}"
        );
    }

    #[test]
    fn no_cap_never_waits() {
        let p = Pacer::unlimited();
        assert!(!p.is_limited());
        assert_eq!(p.chunk(1000), 1000);
        assert!(p.try_take(u64::MAX).is_ok());
    }
}
