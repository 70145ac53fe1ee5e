//! An agent's output read line by line as it arrives (the bytes may be cut anywhere), and
//! the one-line form of a text the terminal shows. Shared by the adapters' output parsers;
//! pure, never prints.

/// The lines of a stream, as its bytes arrive.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Takes `bytes`; returns the lines now complete (invalid UTF-8 replaced, line end
    /// and trailing blanks trimmed).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut complete = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            complete.push(String::from_utf8_lossy(&line).trim_end().to_string());
        }
        complete
    }

    /// The last line when it had no line end (once the program has ended), else None.
    pub fn rest(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.pending);
        Some(String::from_utf8_lossy(&rest).trim_end().to_string())
    }
}

/// The first line of `text`, at most 160 characters (`…` where it was cut).
pub fn first_line(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or("");
    let mut out: String = line.chars().take(160).collect();
    if line.chars().count() > 160 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_cut_anywhere_come_out_whole() {
        let mut lines = Lines::default();
        assert!(lines.feed(b"{\"a\":").is_empty());
        assert_eq!(lines.feed(b"1}\r\n{\"b\"\n{\"c"), ["{\"a\":1}", "{\"b\""]);
        assert_eq!(lines.feed(b"\xff\n"), ["{\"c\u{fffd}"]);
        assert!(lines.feed(b"tail").is_empty());
        assert_eq!(lines.rest().as_deref(), Some("tail"));
        assert_eq!(lines.rest(), None);
    }

    #[test]
    fn the_first_line_is_short() {
        assert_eq!(first_line("  one\ntwo"), "one");
        let long = "x".repeat(200);
        let cut = first_line(&long);
        assert_eq!(cut.chars().count(), 161);
        assert!(cut.ends_with('…'));
        assert_eq!(first_line(""), "");
    }
}
