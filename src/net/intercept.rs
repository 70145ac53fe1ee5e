//! HTTP/1.1 on a terminated connection to an inject host: requests read one by one from
//! the agent, the placeholder swapped for the value in the request line and headers (never
//! the body), sent to the verified upstream; responses streamed back chunk by chunk with
//! every value swapped back for its placeholder.
//!
//! It owns the strict parsing that keeps one request from being read two ways (request
//! smuggling): one `Content-Length` or `Transfer-Encoding: chunked`, never both, no folded
//! or bare-LF header lines, bounded heads. It must never buffer a whole body, never send a
//! value toward any host but the one the connection was opened to, never print.

use std::io::{self, Read, Write};

use super::inject::{Injection, Swap};

/// A request head larger than this is answered `431`.
pub(crate) const MAX_REQUEST_HEAD: usize = 32 * 1024;
/// A response head larger than this ends the connection.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// A chunk-size line longer than this is malformed.
const MAX_CHUNK_LINE: usize = 4096;
const READ_CHUNK: usize = 64 * 1024;

/// What the proxy keeps about injected requests.
pub(crate) trait Recorder {
    /// A request to `host:port` had the value of `name` put in.
    fn injected(&self, host: &str, port: u16, name: &str);
    /// A placeholder of `name` went toward `host:port`, where it is never substituted.
    fn leaked(&self, host: &str, port: u16, name: &str, how: &str);
    /// A request on a terminated connection to `host:port` was refused for `reason`.
    fn refused(&self, host: &str, port: u16, reason: &str);
}

/// A connection read through a buffer, so a head can be read and what follows kept.
pub(crate) struct BufConn<T> {
    pub(crate) io: T,
    buf: Vec<u8>,
    start: usize,
}

enum HeadError {
    /// The peer closed before sending anything.
    Closed,
    TooLarge,
    Io,
}

impl<T: Read + Write> BufConn<T> {
    pub(crate) fn new(io: T) -> Self {
        BufConn {
            io,
            buf: Vec::new(),
            start: 0,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more into the buffer; 0 at end of stream (a TLS peer that closes without
    /// `close_notify` also reads as the end).
    fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let n = loop {
            match self.io.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break 0,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(old + n);
        Ok(n)
    }

    fn read_head(&mut self, max: usize) -> Result<Vec<u8>, HeadError> {
        let mut searched: usize = 0;
        loop {
            let from = searched.saturating_sub(3);
            if let Some(i) = memchr::memmem::find(&self.buffered()[from..], b"\r\n\r\n") {
                let end = from + i + 4;
                if end > max {
                    return Err(HeadError::TooLarge);
                }
                let head = self.buffered()[..end].to_vec();
                self.consume(end);
                return Ok(head);
            }
            searched = self.buffered().len();
            if searched > max {
                return Err(HeadError::TooLarge);
            }
            match self.fill() {
                Ok(0) if searched == 0 => return Err(HeadError::Closed),
                Ok(0) | Err(_) => return Err(HeadError::Io),
                Ok(_) => {}
            }
        }
    }

    /// One CRLF-ended line, without the CRLF.
    fn read_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = memchr::memmem::find(self.buffered(), b"\r\n") {
                let line = self.buffered()[..i].to_vec();
                self.consume(i + 2);
                return Ok(line);
            }
            if self.buffered().len() > max {
                return Err(invalid("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Up to `max` bytes: what is buffered, else one read. Empty at end of stream.
    fn read_some(&mut self, max: usize) -> io::Result<Vec<u8>> {
        if self.buffered().is_empty() && self.fill()? == 0 {
            return Ok(Vec::new());
        }
        let n = self.buffered().len().min(max);
        let out = self.buffered()[..n].to_vec();
        self.consume(n);
        Ok(out)
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// A parsed head: the first line and the header fields, in order.
#[derive(Debug)]
struct Head {
    line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    /// Strict HTTP/1.x head parsing; the reason when it is not one.
    fn parse(raw: &[u8]) -> Result<Head, String> {
        let text = std::str::from_utf8(raw).map_err(|_| "head is not UTF-8".to_string())?;
        let text = text
            .strip_suffix("\r\n\r\n")
            .ok_or("head does not end with a blank line")?;
        let mut lines = text.split("\r\n");
        let line = lines.next().unwrap_or_default().to_string();
        if line
            .bytes()
            .any(|b| b == b'\r' || b == b'\n' || (b < 0x20 && b != b'\t'))
        {
            return Err("control character in the first line".into());
        }
        let mut headers = Vec::new();
        for l in lines {
            if l.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err("a bare CR or LF in a header line".into());
            }
            if l.starts_with([' ', '\t']) {
                return Err("folded header lines are not accepted".into());
            }
            let (name, value) = l.split_once(':').ok_or("a header line without ':'")?;
            let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
            if name.is_empty() || !name.bytes().all(token) {
                return Err(format!("bad header name '{name}'"));
            }
            let value = value.trim_matches([' ', '\t']);
            if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
                return Err(format!("control character in header '{name}'"));
            }
            headers.push((name.to_string(), value.to_string()));
        }
        Ok(Head { line, headers })
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The body framing, refusing every ambiguous combination.
    fn framing(&self) -> Result<Framing, String> {
        let lengths: Vec<&str> = self.values("content-length").collect();
        let encodings: Vec<&str> = self.values("transfer-encoding").collect();
        match (lengths.as_slice(), encodings.as_slice()) {
            ([], []) => Ok(Framing::None),
            ([_, _, ..], _) => Err("more than one Content-Length".into()),
            ([_], [_, ..]) => Err("both Content-Length and Transfer-Encoding".into()),
            ([n], []) => {
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.len() > 18 {
                    return Err(format!("bad Content-Length '{n}'"));
                }
                n.parse()
                    .map(Framing::Length)
                    .map_err(|_| format!("bad Content-Length '{n}'"))
            }
            ([], [te]) if te.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            ([], _) => Err("only 'Transfer-Encoding: chunked' is accepted".into()),
        }
    }

    fn render(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        out.push_str(&self.line);
        out.push_str("\r\n");
        for (k, v) in &self.headers {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// Serves one terminated connection until either side ends it.
pub(crate) fn serve<C: Read + Write, U: Read + Write>(
    injection: &Injection,
    recorder: &dyn Recorder,
    host: &str,
    port: u16,
    client: C,
    upstream: U,
) {
    let mut client = BufConn::new(client);
    let mut upstream = BufConn::new(upstream);
    let ours = injection.for_host(host, port);
    let put_in = Swap::new(
        ours.iter()
            .map(|p| {
                (
                    p.placeholder().as_bytes().to_vec(),
                    p.value().as_bytes().to_vec(),
                )
            })
            .collect(),
    );
    loop {
        let raw = match client.read_head(MAX_REQUEST_HEAD) {
            Ok(raw) => raw,
            Err(HeadError::TooLarge) => {
                let _ = answer(&mut client.io, 431, "request head larger than 32 KiB");
                return;
            }
            Err(HeadError::Closed | HeadError::Io) => return,
        };
        let mut head = match Head::parse(&raw) {
            Ok(h) => h,
            Err(why) => {
                let _ = answer(&mut client.io, 400, &why);
                return;
            }
        };
        let framing = match head.framing() {
            Ok(f) => f,
            Err(why) => {
                let _ = answer(&mut client.io, 400, &why);
                return;
            }
        };
        if head.values("upgrade").next().is_some() {
            let _ = answer(
                &mut client.io,
                501,
                "protocol upgrades are not carried on a connection chant injects secrets into",
            );
            return;
        }
        if let Err(why) = same_origin(&head, host, port) {
            // Domain fronting: behind a shared front end, Host picks the site that gets
            // the request, and with it the value.
            recorder.refused(host, port, &why);
            let _ = answer(&mut client.io, 421, &why);
            return;
        }
        let head_request = head.line.starts_with("HEAD ");
        let close = head.has_token("connection", "close") || head.line.ends_with("HTTP/1.0");
        let expects = head.has_token("expect", "100-continue");
        // No Accept-Encoding: an uncompressed response can have the value swapped out of
        // its body too, should the server echo it.
        head.headers.retain(|(k, _)| {
            !k.eq_ignore_ascii_case("expect")
                && !k.eq_ignore_ascii_case("accept-encoding")
                && !k.to_ascii_lowercase().starts_with("proxy-")
        });
        let mut bytes = head.render();
        // Placeholders of secrets that do not belong to this host go through unchanged.
        let foreign: Vec<&str> = injection
            .placeholders_in(&bytes)
            .into_iter()
            .filter(|name| !ours.iter().any(|p| p.name == *name))
            .collect();
        for name in foreign {
            recorder.leaked(
                host,
                port,
                name,
                "in a request to a host it is not injected for",
            );
        }
        for p in &ours {
            if memchr::memmem::find(&bytes, p.placeholder().as_bytes()).is_some() {
                recorder.injected(host, port, &p.name);
            }
        }
        put_in.all(&mut bytes);
        if expects
            && (client
                .io
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .is_err()
                || client.io.flush().is_err())
        {
            return;
        }
        if upstream.io.write_all(&bytes).is_err()
            || send_body(&mut client, &mut upstream.io, framing, None).is_err()
            || upstream.io.flush().is_err()
        {
            let _ = answer(&mut client.io, 502, "the upstream closed the connection");
            return;
        }
        match relay_response(injection, &mut upstream, &mut client.io, head_request) {
            Ok(true) if !close => continue,
            Ok(_) => return,
            Err(_) => return,
        }
    }
}

/// Checks that a request goes to the host the connection was opened to: an origin-form
/// target (`/path` or `*`) and exactly one `Host` naming that host (and port, unless 443).
fn same_origin(head: &Head, host: &str, port: u16) -> Result<(), String> {
    let target = head.line.split(' ').nth(1).unwrap_or_default();
    if !(target.starts_with('/') || target == "*") {
        return Err(format!(
            "request target '{target}' is not a path; on a connection to {host} only paths are sent"
        ));
    }
    let hosts: Vec<&str> = head.values("host").collect();
    let [given] = hosts.as_slice() else {
        return Err(format!(
            "a request to {host} needs exactly one Host header, found {}",
            hosts.len()
        ));
    };
    let given = given.to_ascii_lowercase();
    let ok = given == format!("{host}:{port}") || (port == 443 && given == host);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Host '{given}' is not {host}:{port}, the host this connection was opened to"
        ))
    }
}

/// Streams one response (after any 1xx) back to the client; true when the connection can
/// carry another request.
fn relay_response<U: Read + Write, C: Write>(
    injection: &Injection,
    upstream: &mut BufConn<U>,
    client: &mut C,
    head_request: bool,
) -> io::Result<bool> {
    loop {
        let raw = upstream
            .read_head(MAX_RESPONSE_HEAD)
            .map_err(|_| invalid("no response head"))?;
        let head = Head::parse(&raw).map_err(|why| invalid(&why))?;
        let status: u16 = head
            .line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        if status == 101 {
            return Err(invalid("upgrade"));
        }
        let mut bytes = head.render();
        let hide = injection.hide_values();
        hide.all(&mut bytes);
        client.write_all(&bytes)?;
        if (100..200).contains(&status) {
            client.flush()?;
            continue;
        }
        let framing = if head_request || status == 204 || status == 304 {
            Framing::None
        } else if head.values("transfer-encoding").next().is_some() {
            // RFC 9112 6.3: Transfer-Encoding wins; anything but chunked runs to the end.
            if head.has_token("transfer-encoding", "chunked") {
                Framing::Chunked
            } else {
                Framing::Close
            }
        } else {
            match head.framing().map_err(|why| invalid(&why))? {
                Framing::None => Framing::Close,
                f => f,
            }
        };
        let encoded = head
            .values("content-encoding")
            .any(|v| !v.eq_ignore_ascii_case("identity"));
        // A compressed body cannot be searched; it goes through as it came.
        let mut swap = (!encoded).then_some(hide);
        client.flush()?;
        send_body(upstream, client, framing, swap.as_mut())?;
        client.flush()?;
        return Ok(framing != Framing::Close && !head.has_token("connection", "close"));
    }
}

/// Copies one body from `from` to `to` per `framing`, flushing after every piece so a
/// stream (SSE) arrives as it is produced; `swap` rewrites it on the way.
fn send_body<F: Read + Write, T: Write>(
    from: &mut BufConn<F>,
    to: &mut T,
    framing: Framing,
    mut swap: Option<&mut Swap>,
) -> io::Result<()> {
    match framing {
        Framing::None => {}
        Framing::Length(mut left) => {
            while left > 0 {
                let data = from.read_some(left.min(READ_CHUNK as u64) as usize)?;
                if data.is_empty() {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                left -= data.len() as u64;
                pass(to, &mut swap, &data, false)?;
            }
        }
        Framing::Close => loop {
            let data = from.read_some(READ_CHUNK)?;
            if data.is_empty() {
                break;
            }
            pass(to, &mut swap, &data, false)?;
        },
        Framing::Chunked => {
            loop {
                let line = from.read_line(MAX_CHUNK_LINE)?;
                let size = line.split(|b| *b == b';').next().unwrap_or_default();
                let size = std::str::from_utf8(size)
                    .ok()
                    .map(|s| s.trim_matches([' ', '\t']))
                    .filter(|s| !s.is_empty() && s.len() <= 15)
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                    .ok_or_else(|| invalid("bad chunk size"))?;
                if size == 0 {
                    break;
                }
                let mut left = size;
                while left > 0 {
                    let data = from.read_some(left.min(READ_CHUNK as u64) as usize)?;
                    if data.is_empty() {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    left -= data.len() as u64;
                    pass(to, &mut swap, &data, true)?;
                }
                if !from.read_line(2)?.is_empty() {
                    return Err(invalid("chunk not followed by CRLF"));
                }
            }
            let rest = swap.as_mut().map(|s| s.finish()).unwrap_or_default();
            if !rest.is_empty() {
                write!(to, "{:x}\r\n", rest.len())?;
                to.write_all(&rest)?;
                to.write_all(b"\r\n")?;
            }
            to.write_all(b"0\r\n")?;
            // Trailers: passed on line by line (values hidden), then the blank line.
            loop {
                let mut line = from.read_line(MAX_CHUNK_LINE)?;
                if line.is_empty() {
                    break;
                }
                if let Some(s) = swap.as_ref() {
                    s.all(&mut line);
                }
                to.write_all(&line)?;
                to.write_all(b"\r\n")?;
            }
            to.write_all(b"\r\n")?;
            return to.flush();
        }
    }
    if let Some(s) = swap {
        let rest = s.finish();
        to.write_all(&rest)?;
    }
    to.flush()
}

/// One piece of a body, rewritten by `swap`, written (as a chunk when `chunked`) and flushed.
fn pass<T: Write>(
    to: &mut T,
    swap: &mut Option<&mut Swap>,
    data: &[u8],
    chunked: bool,
) -> io::Result<()> {
    let out = match swap.as_mut() {
        Some(s) => s.push(data),
        None => data.to_vec(),
    };
    if out.is_empty() {
        return Ok(());
    }
    if chunked {
        write!(to, "{:x}\r\n", out.len())?;
        to.write_all(&out)?;
        to.write_all(b"\r\n")?;
    } else {
        to.write_all(&out)?;
    }
    to.flush()
}

fn answer(client: &mut impl Write, status: u16, message: &str) -> io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        _ => "Bad Gateway",
    };
    let body = format!("git-chant: {message}\n");
    write!(
        client,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    client.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(head: &str) -> Result<Framing, String> {
        Head::parse(head.as_bytes())?.framing()
    }

    #[test]
    fn every_ambiguous_body_framing_is_refused() {
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nX: a\rContent-Length: 3\r\n\r\n",
        ] {
            assert!(framing(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            framing("POST / HTTP/1.1\r\ncontent-length: 12\r\n\r\n"),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Framing::None)
        );
    }
}
