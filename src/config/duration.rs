//! Go-style durations (`5m0s`, `24h`, `1.5h`, `300ms`), as RKE writes them in cluster.yml.

use std::fmt;
use std::time::Duration;

/// A duration written the way Go's `time.ParseDuration` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("negative durations are not allowed")]
    Negative,
    #[error("missing unit in duration `{0}` (use ns, us, ms, s, m or h, e.g. `5m0s`)")]
    MissingUnit(String),
    #[error("unknown unit `{unit}` in duration `{input}` (use ns, us, ms, s, m or h)")]
    UnknownUnit { unit: String, input: String },
    #[error("`{0}` is not a duration (expected something like `5m0s` or `24h`)")]
    Invalid(String),
    #[error("duration `{0}` is too large")]
    Overflow(String),
}

impl GoDuration {
    /// Parses a Go duration string.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        let s = match s.strip_prefix('+') {
            Some(rest) => rest,
            None if s.starts_with('-') => {
                if s == "-0" {
                    return Ok(GoDuration(Duration::ZERO));
                }
                return Err(DurationError::Negative);
            }
            None => s,
        };
        if s == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut total_nanos: u128 = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let int_part = &s[start..i];
            let mut frac_part = "";
            if i < bytes.len() && bytes[i] == b'.' {
                i += 1;
                let fstart = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                frac_part = &s[fstart..i];
            }
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(DurationError::Invalid(input.to_string()));
            }
            let ustart = i;
            while i < bytes.len() && !bytes[i].is_ascii_digit() && bytes[i] != b'.' {
                i += 1;
            }
            let unit = &s[ustart..i];
            if unit.is_empty() {
                return Err(DurationError::MissingUnit(input.to_string()));
            }
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60 * 1_000_000_000,
                "h" => 3_600 * 1_000_000_000,
                other => {
                    return Err(DurationError::UnknownUnit { unit: other.to_string(), input: input.to_string() });
                }
            };
            let overflow = || DurationError::Overflow(input.to_string());
            let int_val: u128 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| overflow())? };
            let mut nanos = int_val.checked_mul(unit_nanos).ok_or_else(overflow)?;
            if !frac_part.is_empty() {
                // Only the digits that can still matter at nanosecond precision.
                let digits = &frac_part[..frac_part.len().min(18)];
                let frac_val: u128 = digits.parse().map_err(|_| overflow())?;
                let scale = 10u128.pow(digits.len() as u32);
                nanos = nanos.checked_add(frac_val * unit_nanos / scale).ok_or_else(overflow)?;
            }
            total_nanos = total_nanos.checked_add(nanos).ok_or_else(overflow)?;
        }
        let secs =
            u64::try_from(total_nanos / 1_000_000_000).map_err(|_| DurationError::Overflow(input.to_string()))?;
        Ok(GoDuration(Duration::new(secs, (total_nanos % 1_000_000_000) as u32)))
    }
}

impl fmt::Display for GoDuration {
    /// Formats like Go's `Duration.String()`: `5m0s`, `24h0m0s`, `1.5s`, `300ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return write!(f, "0s");
        }
        if d < Duration::from_secs(1) {
            let n = d.as_nanos();
            return if n < 1_000 {
                write!(f, "{n}ns")
            } else if n < 1_000_000 {
                write!(f, "{}µs", trim_frac(n, 1_000))
            } else {
                write!(f, "{}ms", trim_frac(n, 1_000_000))
            };
        }
        let total = d.as_secs();
        let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
        let sub = d.subsec_nanos();
        let secs = if sub == 0 {
            s.to_string()
        } else {
            trim_frac(u128::from(s) * 1_000_000_000 + u128::from(sub), 1_000_000_000)
        };
        if h > 0 {
            write!(f, "{h}h{m}m{secs}s")
        } else if m > 0 {
            write!(f, "{m}m{secs}s")
        } else {
            write!(f, "{secs}s")
        }
    }
}

fn trim_frac(n: u128, unit: u128) -> String {
    let int = n / unit;
    let frac = n % unit;
    if frac == 0 {
        return int.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

impl serde::Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GoDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Duration {
        GoDuration::parse(s).unwrap().0
    }

    #[test]
    fn parses_the_reference_defaults() {
        assert_eq!(p("5m0s"), Duration::from_secs(300));
        assert_eq!(p("24h"), Duration::from_secs(86_400));
        assert_eq!(p("1m0s"), Duration::from_secs(60));
        assert_eq!(p("1.5h"), Duration::from_secs(5_400));
        assert_eq!(p("300ms"), Duration::from_millis(300));
        assert_eq!(p("1h2m3s4ms"), Duration::from_millis(3_723_004));
        assert_eq!(p("0"), Duration::ZERO);
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(GoDuration(Duration::from_secs(300)).to_string(), "5m0s");
        assert_eq!(GoDuration(Duration::from_secs(86_400)).to_string(), "24h0m0s");
        assert_eq!(GoDuration(Duration::from_millis(1_500)).to_string(), "1.5s");
        assert_eq!(GoDuration(Duration::from_millis(300)).to_string(), "300ms");
        assert_eq!(GoDuration(Duration::from_secs(10)).to_string(), "10s");
    }

    #[test]
    fn refuses_bad_durations() {
        assert_eq!(GoDuration::parse("-5m"), Err(DurationError::Negative));
        assert!(matches!(GoDuration::parse("5"), Err(DurationError::MissingUnit(_))));
        assert!(matches!(GoDuration::parse("5 minutes"), Err(DurationError::UnknownUnit { .. })));
        assert!(matches!(GoDuration::parse("abc"), Err(DurationError::Invalid(_))));
        assert!(matches!(GoDuration::parse(""), Err(DurationError::Empty)));
        assert!(matches!(GoDuration::parse("99999999999999999999h"), Err(DurationError::Overflow(_))));
    }
}
