//! MMITSS naming, timestamps, a deterministic PRNG and the collector's CSV shape.

use std::io::Write;

/// The five elements the collector logs, by their element names.
pub const ELEMENTS: [&str; 5] = ["spat", "remoteBsm", "srm", "ssm", "msgCount"];

/// File-name token of an element (`spat` → `spatLog`, `msgCount` → `msgCountsLog`).
pub fn element_file_token(element: &str) -> &'static str {
    match element {
        "spat" => "spatLog",
        "remoteBsm" => "remoteBsmLog",
        "srm" => "srmLog",
        "ssm" => "ssmLog",
        "msgCount" => "msgCountsLog",
        other => panic!("unknown element {other:?}"),
    }
}

/// The element a file name is expected to be classified as: the `_`-separated
/// token right before the `_MMDDYYYY_HHMMSS.csv` ending, when it is one of the
/// five tokens (`X_spatLog_06092021_000000.csv` → `spat`,
/// `X_msgCountsLog_...` → `msgCount`). Anything else (zip, `hostBsmLog`,
/// notes.txt, no timestamp) → `None`.
pub fn expected_element(file_name: &str) -> Option<&'static str> {
    let stem = file_name.strip_suffix(".csv")?;
    let mut parts = stem.rsplitn(4, '_');
    let hms = parts.next()?;
    let mdy = parts.next()?;
    let token = parts.next()?;
    let name = parts.next()?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if name.is_empty() || !digits(mdy, 8) || !digits(hms, 6) {
        return None;
    }
    ELEMENTS
        .iter()
        .copied()
        .find(|el| element_file_token(el) == token)
}

/// A UTC wall-clock time, formatted the collector's way by [`Stamp::mmitss`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(pub i64);

impl Stamp {
    /// From calendar fields (UTC).
    pub fn new(year: i64, month: u32, day: u32, hour: u32, min: u32, sec: u32) -> Stamp {
        let days = days_from_civil(year, month, day);
        Stamp(days * 86_400 + i64::from(hour * 3600 + min * 60 + sec))
    }

    /// Unix seconds.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// This time plus `secs` seconds.
    pub fn plus_secs(self, secs: i64) -> Stamp {
        Stamp(self.0 + secs)
    }

    /// (year, month, day, hour, min, sec).
    pub fn fields(self) -> (i64, u32, u32, u32, u32, u32) {
        let days = self.0.div_euclid(86_400);
        let s = self.0.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(days);
        (y, m, d, s / 3600, s / 60 % 60, s % 60)
    }

    /// `MMDDYYYY_HHMMSS`, as in session dir and file names.
    pub fn mmitss(self) -> String {
        let (y, mo, d, h, mi, s) = self.fields();
        format!("{mo:02}{d:02}{y:04}_{h:02}{mi:02}{s:02}")
    }

    /// `YYYY-MM-DD HH:MM:SS`.
    pub fn iso(self) -> String {
        let (y, mo, d, h, mi, s) = self.fields();
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
    }
}

/// Midnight UTC of `month`/`day` 2021, the year every fixture is dated in.
pub fn stamp(month: u32, day: u32) -> Stamp {
    Stamp::new(2021, month, day, 0, 0, 0)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `<Name>_<MMDDYYYY_HHMMSS>` (session dir name, zip stem).
pub fn session_name(coproc: &str, stamp: Stamp) -> String {
    format!("{coproc}_{}", stamp.mmitss())
}

/// `<Name>_<element token>_<MMDDYYYY_HHMMSS>.csv`.
pub fn element_file_name(coproc: &str, element: &str, stamp: Stamp) -> String {
    format!(
        "{coproc}_{}_{}.csv",
        element_file_token(element),
        stamp.mmitss()
    )
}

/// Small deterministic PRNG (splitmix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Seed derived from a string (FNV-1a) and a number.
    pub fn from_str_seed(s: &str, seed: u64) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in s.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        Rng(h)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Fill `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `len` deterministic pseudo-random bytes (fast; for big opaque files).
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

const TS_COLS: &str = "log_timestamp_verbose,log_timestamp_posix,timestamp_verbose,timestamp_posix";

/// The collector's CSV header row for `element` (no newline).
pub fn csv_header(element: &str) -> String {
    match element {
        "msgCount" => {
            format!("{TS_COLS},interval_sec,msg_source,msg_type,msg_count,msg_served,msg_rejected")
        }
        "remoteBsm" => format!(
            "{TS_COLS},temporaryId,secMark,latitude,longitude,elevation,speed,heading,type,length,\
             width,onmap_status,position_on_map,current_approach,current_lane,\
             current_signal_group,dist_to_stopbar"
        ),
        "spat" => {
            let mut phases = Vec::new();
            for p in ["v", "p"] {
                for n in 1..=8 {
                    phases.push(format!(
                        "{p}{n}_currState,{p}{n}_minEndTime,{p}{n}_maxEndTime,{p}{n}_elapsedTime"
                    ));
                }
            }
            format!(
                "{TS_COLS},regionalId,intersectionId,msgCount,moy,msom,{}",
                phases.join(",")
            )
        }
        "srm" => format!(
            "{TS_COLS},minuteOfYear,msOfMinute,msgCount,regionalID,intersectionID,\
             priorityRequestType,basicVehicleRole,laneID,eTA_Minute,eTA_Second,eTA_Duration,\
             vehicleID,latitude,longitude,elevation,heading,speed,vehicleType"
        ),
        "ssm" => {
            let reqs: Vec<String> = (1..=5)
                .map(|n| {
                    format!(
                        "r{n}_vehicleID,r{n}_msgCount,r{n}_basicVehicleRole,r{n}_inBoundLaneID,\
                         r{n}_ETA_Minute,r{n}_ETA_Second,r{n}_ETA_Duration,r{n}_priorityRequestStatus"
                    )
                })
                .collect();
            format!(
                "{TS_COLS},minuteOfYear,msOfMinute,sequenceNumber,updateCount,regionalID,\
                 noOfRequest,intersectionID,{}",
                reqs.join(",")
            )
        }
        other => panic!("unknown element {other:?}"),
    }
}

fn rate_hz(element: &str) -> f64 {
    match element {
        "msgCount" => 0.2,
        "remoteBsm" => 200.0,
        "spat" => 10.0,
        _ => 0.5,
    }
}

/// One row body (everything after the 4 timestamp columns).
fn row_tail(element: &str, r: &mut Rng) -> String {
    match element {
        "remoteBsm" => format!(
            "{},{},{:.7},{:.7},{:.1},{:.2},{:.4},{},{},{},{},{},{},{},{},{:.2}",
            r.range(1, 1 << 31),
            r.below(60_000),
            32.2 + r.unit() * 0.05,
            -110.95 + r.unit() * 0.05,
            700.0 + r.unit() * 20.0,
            r.unit() * 20.0,
            r.unit() * 360.0,
            r.pick(&["car", "truck", "transit", "EmergencyVehicle"]),
            r.pick(&[450, 480, 520, 1200, 1800]),
            r.pick(&[180, 200, 250]),
            r.pick(&["True", "False"]),
            r.pick(&["inbound", "outbound", "inside_intersection_box"]),
            r.range(1, 4),
            r.range(1, 8),
            r.range(1, 8),
            r.unit() * 300.0
        ),
        "spat" => {
            let mut s = format!(
                "0,{},{},{},{}",
                r.pick(&[6916, 27013, 1003]),
                r.below(127),
                r.below(527_040),
                r.below(60_000)
            );
            for _ in 0..16 {
                let st = r.pick(&["red", "green", "yellow", "permissive_green", "inactive"]);
                s.push_str(&format!(
                    ",{st},{},{},{}",
                    r.below(1200),
                    r.below(1200),
                    r.below(1200)
                ));
            }
            s
        }
        "msgCount" => format!(
            "10,{},{},{},{},{}",
            r.pick(&["RSU", "MsgDecoder"]),
            r.pick(&["BSM", "SPaT", "MAP", "SRM", "SSM"]),
            r.below(5000),
            r.below(50),
            r.below(5)
        ),
        "srm" => format!(
            "{},{},{},0,27013,{},{},{},{},{},{},{},{:.7},{:.7},{:.1},{:.4},{:.2},{}",
            r.below(527_040),
            r.below(60_000),
            r.below(127),
            r.range(1, 3),
            r.pick(&["transit", "truck", "emergency"]),
            r.range(1, 15),
            r.below(527_040),
            r.below(60_000),
            r.below(60_000),
            r.range(1, 1 << 31),
            32.2 + r.unit() * 0.05,
            -110.95 + r.unit() * 0.05,
            700.0 + r.unit() * 20.0,
            r.unit() * 360.0,
            r.unit() * 20.0,
            r.pick(&["bus", "truck", "car"])
        ),
        _ => {
            let mut s = format!(
                "{},{},{},{},0,{},27013",
                r.below(527_040),
                r.below(60_000),
                r.below(127),
                r.below(127),
                r.below(5)
            );
            for _ in 0..5 {
                s.push_str(&format!(
                    ",{},{},{},{},{},{},{},{}",
                    r.range(1, 1 << 31),
                    r.below(127),
                    r.pick(&["transit", "truck"]),
                    r.range(1, 15),
                    r.below(60),
                    r.below(60_000),
                    r.below(10_000),
                    r.pick(&["granted", "processing", "rejected"])
                ));
            }
            s
        }
    }
}

/// A CSV file body for `element`: header row, then rows (timestamps from
/// `start` at the element's logging rate) while the total stays within
/// `target` bytes (never less than the header). Deterministic in `rng`.
pub fn csv_bytes(element: &str, start: Stamp, target: u64, rng: &mut Rng) -> Vec<u8> {
    let header = csv_header(element);
    let mut out = Vec::with_capacity(target.max(header.len() as u64 + 1) as usize);
    out.extend_from_slice(header.as_bytes());
    out.push(b'\n');
    let pool: Vec<String> = (0..256).map(|_| row_tail(element, rng)).collect();
    let dt = 1.0 / rate_hz(element);
    let mut t = start.unix() as f64;
    let mut sec_cache = (i64::MIN, String::new());
    let mut row = Vec::with_capacity(512);
    loop {
        let sec = t.floor() as i64;
        if sec != sec_cache.0 {
            sec_cache = (sec, Stamp(sec).iso());
        }
        let us = ((t - sec as f64) * 1e6) as u32;
        row.clear();
        let tail = &pool[rng.below(pool.len() as u64) as usize];
        let msg_t = t - 0.002 - (rng.below(7) as f64) * 1e-4;
        writeln!(
            row,
            "{s}.{us:06},{sec}.{us:06},{s}.{us:06},{msg_t:.6},{tail}",
            s = sec_cache.1
        )
        .expect("format row");
        if (out.len() + row.len()) as u64 > target {
            break;
        }
        out.extend_from_slice(&row);
        t += dt;
    }
    out
}
