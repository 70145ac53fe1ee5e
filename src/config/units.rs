//! Quantities written in configuration: sizes (`2G`, `512Mi`), durations (`30s`, `90d`)
//! and CPU amounts (`1`, `0.5`, `250m`). Each keeps the text the user wrote, for display
//! and for passing on to platforms (Kubernetes) that have their own notation.

use std::fmt;
use std::time::Duration;

/// A size in bytes. `K`, `M`, `G`, `T` (optionally followed by `B` or `i`/`iB`) are powers
/// of 1024, as Docker and qemu read them; a bare number is bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteSize {
    bytes: u64,
    text: String,
}

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "ki" | "kib" => 10,
            "m" | "mb" | "mi" | "mib" => 20,
            "g" | "gb" | "gi" | "gib" => 30,
            "t" | "tb" | "ti" | "tib" => 40,
            _ => {
                return Err(format!(
                    "'{text}' is not a size; write e.g. 512M, 2G or 2Gi"
                ))
            }
        };
        let bytes = scaled(number, 1u64 << shift)
            .ok_or_else(|| format!("'{text}' is not a size; write e.g. 512M, 2G or 2Gi"))?;
        if bytes == 0 {
            return Err(format!("'{text}' is zero; a size must be positive"));
        }
        Ok(ByteSize {
            bytes,
            text: t.to_string(),
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `number * unit`, where `number` may have a decimal fraction; None on overflow or junk.
fn scaled(number: &str, unit: u64) -> Option<u64> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut value = whole.checked_mul(unit)?;
    if !frac.is_empty() {
        if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let digits: u64 = frac.parse().ok()?;
        let scale = 10u64.pow(frac.len() as u32);
        value = value.checked_add(digits.checked_mul(unit)? / scale)?;
    }
    Some(value)
}

/// A duration: an integer with `ms`, `s`, `m`, `h`, `d` or `w`, or several of them
/// (`1h30m`); a bare integer is seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    duration: Duration,
    text: String,
}

impl Span {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not a duration; write e.g. 30s, 10m, 2h or 90d");
        let t = text.trim();
        if t.is_empty() {
            return Err(bad());
        }
        if let Ok(secs) = t.parse::<u64>() {
            return Ok(Span {
                duration: Duration::from_secs(secs),
                text: t.to_string(),
            });
        }
        let mut total_ms: u64 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let ms_per = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 604_800_000,
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            total_ms = n
                .checked_mul(ms_per)
                .and_then(|v| total_ms.checked_add(v))
                .ok_or_else(bad)?;
        }
        Ok(Span {
            duration: Duration::from_millis(total_ms),
            text: t.to_string(),
        })
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A CPU amount in thousandths of a CPU: `1`, `2`, `0.5`, `250m`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    millis: u64,
    text: String,
}

impl Cpu {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let bad = || format!("'{text}' is not a CPU amount; write e.g. 1, 0.5 or 250m");
        let millis = match t.strip_suffix('m') {
            Some(m) => m.parse::<u64>().map_err(|_| bad())?,
            None => scaled(t, 1000).ok_or_else(bad)?,
        };
        if millis == 0 {
            return Err(format!("'{text}' is zero; a CPU amount must be positive"));
        }
        Ok(Cpu {
            millis,
            text: t.to_string(),
        })
    }

    pub fn millis(&self) -> u64 {
        self.millis
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("2G").map(|s| s.bytes()), Ok(2 << 30));
        assert_eq!(ByteSize::parse("512Mi").map(|s| s.bytes()), Ok(512 << 20));
        assert_eq!(ByteSize::parse("1.5G").map(|s| s.bytes()), Ok(3 << 29));
        assert_eq!(ByteSize::parse("4096").map(|s| s.bytes()), Ok(4096));
        for bad in ["", "G", "2X", "-1G", "0", "1.2.3G", "99999999999999999999T"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spans() {
        let secs = |t: &str| Span::parse(t).map(|s| s.duration().as_secs());
        assert_eq!(secs("30s"), Ok(30));
        assert_eq!(secs("10m"), Ok(600));
        assert_eq!(secs("90d"), Ok(90 * 86_400));
        assert_eq!(secs("1h30m"), Ok(5_400));
        assert_eq!(secs("45"), Ok(45));
        for bad in ["", "s", "10x", "1.5h", "h1", "-3s"] {
            assert!(Span::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpus() {
        assert_eq!(Cpu::parse("1").map(|c| c.millis()), Ok(1000));
        assert_eq!(Cpu::parse("0.5").map(|c| c.millis()), Ok(500));
        assert_eq!(Cpu::parse("250m").map(|c| c.millis()), Ok(250));
        assert!(Cpu::parse("0").is_err());
        assert!(Cpu::parse("lots").is_err());
    }
}
