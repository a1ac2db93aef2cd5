//! FCPv2 message framing, without I/O.
//!
//! ```text
//! ClientPut                  the message's name, a line of its own
//! URI=CHK@                   Name=Value lines (the value may hold '=')
//! Identifier=put-1
//! DataLength=5               a message with a payload names its length...
//! Data                       ...and ends in "Data": DataLength bytes follow
//! hello                      (the payload, not a line)
//! ```
//!
//! A message without a payload ends in `EndMessage` (or `End`). Lines end
//! in `\n`; a `\r` before it is dropped. Empty lines between messages are
//! skipped.
//!
//! [`decode`] reads one message's header from the front of a buffer: it
//! answers "need more bytes" (`Ok(None)`), a message and the bytes its
//! header took, or an error that says which client fault it was. It never
//! panics, and it never buffers more than [`MAX_HEADER`] bytes of header or
//! accepts a `DataLength` above the caller's bound: the payload itself is
//! the connection's to read (it may go to disk, not memory).

use std::fmt::Write as _;

/// The longest header (all of a message but its payload) accepted.
pub const MAX_HEADER: usize = 256 * 1024;
/// The most `Name=Value` lines one message may have (a
/// `ClientPutComplexDir` of many files needs a few per file).
pub const MAX_FIELDS: usize = 8192;
/// The longest message name.
const MAX_NAME: usize = 64;

/// One FCP message: its name, its fields in order, and whether a payload
/// of `data_len` bytes follows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub name: String,
    pub fields: Vec<(String, String)>,
    /// `Some(n)`: the message ended in `Data` and `n` payload bytes follow.
    pub data_len: Option<u64>,
}

impl Message {
    pub fn new(name: &str) -> Message {
        Message {
            name: name.to_string(),
            ..Message::default()
        }
    }

    /// Add a field (builder style).
    pub fn with(mut self, key: &str, value: impl std::fmt::Display) -> Message {
        self.fields.push((key.to_string(), value.to_string()));
        self
    }

    /// Add a field if `value` is present.
    pub fn with_opt(self, key: &str, value: Option<impl std::fmt::Display>) -> Message {
        match value {
            Some(v) => self.with(key, v),
            None => self,
        }
    }

    /// The value of `key` (the last one, if it is repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean field: `true`/`false` in any case (pyfreenet sends
    /// Python's `True`), absent: `default`; anything else is `None`.
    pub fn flag(&self, key: &str, default: bool) -> Option<bool> {
        match self.get(key) {
            None => Some(default),
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Some(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" || v.is_empty() => Some(false),
            Some(_) => None,
        }
    }

    /// The request's `Identifier`, if it has one.
    pub fn identifier(&self) -> Option<&str> {
        self.get("Identifier")
    }

    /// The header as bytes: the name, the fields, then `Data` when
    /// `data_len` is set (with `DataLength` added) or `EndMessage`. Values
    /// holding a line break have it replaced by a space, so a value can
    /// never start a line of its own.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64 + self.fields.len() * 32);
        out.push_str(&clean(&self.name));
        out.push('\n');
        for (k, v) in &self.fields {
            if self.data_len.is_some() && k == "DataLength" {
                continue;
            }
            let _ = writeln!(out, "{}={}", clean(k), clean(v));
        }
        match self.data_len {
            Some(n) => {
                let _ = write!(out, "DataLength={n}\nData\n");
            }
            None => out.push_str("EndMessage\n"),
        }
        out.into_bytes()
    }
}

fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\n', '\r']) {
        s.replace(['\n', '\r'], " ").into()
    } else {
        s.into()
    }
}

/// What is wrong with a client's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a header is longer than {MAX_HEADER} bytes")]
    HeaderTooLong,
    #[error("a message has more than {MAX_FIELDS} fields")]
    TooManyFields,
    #[error("a message's header is not UTF-8")]
    NotUtf8,
    #[error("{0:?} is not a message name (letters and digits)")]
    BadName(String),
    #[error("line {0:?} is not Name=Value")]
    BadLine(String),
    #[error("a message ending in Data has no DataLength")]
    MissingDataLength,
    #[error("DataLength {0:?} is not a number")]
    BadDataLength(String),
    #[error("DataLength {len} is more than this node accepts ({max} bytes)")]
    DataTooLong { len: u64, max: u64 },
}

/// A [`FrameError`] with the `Identifier` the message had got to, if any
/// (so the error can name the request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct BadFrame {
    pub error: FrameError,
    pub identifier: Option<String>,
}

/// Read one message's header from the front of `buf`. `Ok(None)`: the
/// header is not complete yet (read more, unless `buf` is already
/// [`MAX_HEADER`] long: that is [`FrameError::HeaderTooLong`]). On success,
/// the message and the number of bytes its header took; a payload of
/// `data_len` bytes follows them. `max_data` bounds `DataLength`.
pub fn decode(buf: &[u8], max_data: u64) -> Result<Option<(Message, usize)>, BadFrame> {
    let mut msg = Message::default();
    let mut pos = 0;
    let fail = |error: FrameError, msg: &Message| BadFrame {
        error,
        identifier: msg.identifier().map(str::to_string),
    };
    loop {
        if pos >= MAX_HEADER {
            return Err(fail(FrameError::HeaderTooLong, &msg));
        }
        let Some(end) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() >= MAX_HEADER {
                return Err(fail(FrameError::HeaderTooLong, &msg));
            }
            return Ok(None);
        };
        let raw = &buf[pos..pos + end];
        pos += end + 1;
        if pos > MAX_HEADER {
            return Err(fail(FrameError::HeaderTooLong, &msg));
        }
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|_| fail(FrameError::NotUtf8, &msg))?;
        if msg.name.is_empty() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if line.len() > MAX_NAME || !line.bytes().all(|b| b.is_ascii_alphanumeric()) {
                let shown: String = line.chars().take(MAX_NAME).collect();
                return Err(fail(FrameError::BadName(shown), &msg));
            }
            msg.name = line.to_string();
            continue;
        }
        match line {
            "EndMessage" | "End" => return Ok(Some((msg, pos))),
            "Data" => {
                let len = match msg.get("DataLength") {
                    Some(text) => text
                        .trim()
                        .parse()
                        .map_err(|_| fail(FrameError::BadDataLength(short(text)), &msg))?,
                    None if msg.name == "ClientPutComplexDir" => {
                        files_length(&msg).map_err(|e| fail(e, &msg))?
                    }
                    None => return Err(fail(FrameError::MissingDataLength, &msg)),
                };
                if len > max_data {
                    return Err(fail(FrameError::DataTooLong { len, max: max_data }, &msg));
                }
                msg.data_len = Some(len);
                return Ok(Some((msg, pos)));
            }
            _ => {}
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(fail(FrameError::BadLine(short(line)), &msg));
        };
        if k.is_empty() {
            return Err(fail(FrameError::BadLine(short(line)), &msg));
        }
        if msg.fields.len() >= MAX_FIELDS {
            return Err(fail(FrameError::TooManyFields, &msg));
        }
        msg.fields.push((k.to_string(), v.to_string()));
    }
}

/// A `ClientPutComplexDir`'s payload has no `DataLength` of its own: it
/// is its direct files' payloads, one after another, so its length is the
/// sum of their `Files.N.DataLength`.
fn files_length(msg: &Message) -> Result<u64, FrameError> {
    let mut total: u64 = 0;
    for (k, v) in &msg.fields {
        let Some(n) = k
            .strip_prefix("Files.")
            .and_then(|rest| rest.strip_suffix(".DataLength"))
        else {
            continue;
        };
        let from = msg
            .get(&format!("Files.{n}.UploadFrom"))
            .unwrap_or("direct");
        if !from.eq_ignore_ascii_case("direct") {
            continue;
        }
        let len: u64 = v
            .trim()
            .parse()
            .map_err(|_| FrameError::BadDataLength(short(v)))?;
        total = total
            .checked_add(len)
            .ok_or_else(|| FrameError::BadDataLength(short(v)))?;
    }
    Ok(total)
}

/// At most 80 characters of `s`, for an error message.
fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_needs_its_end_and_says_how_long_it_was() {
        let text = b"\nClientHello\r\nName=x=y\nExpectedVersion=2.0\nEndMessage\nGetNode\n";
        for cut in 0..text.len() - 8 {
            if cut < 54 {
                assert_eq!(decode(&text[..cut], 0), Ok(None), "cut {cut}");
            }
        }
        let (msg, used) = decode(text, 0).unwrap().unwrap();
        assert_eq!(used, 54);
        assert_eq!(msg.name, "ClientHello");
        assert_eq!(msg.get("Name"), Some("x=y"));
        assert_eq!(msg.data_len, None);
        assert_eq!(decode(&text[used..], 0), Ok(None));
    }

    #[test]
    fn data_follows_a_header_within_the_bound() {
        let text = b"ClientPut\nIdentifier=a\nDataLength=5\nData\nhello";
        let (msg, used) = decode(text, 5).unwrap().unwrap();
        assert_eq!((msg.data_len, &text[used..]), (Some(5), &b"hello"[..]));
        let e = decode(text, 4).unwrap_err();
        assert_eq!(e.error, FrameError::DataTooLong { len: 5, max: 4 });
        assert_eq!(e.identifier.as_deref(), Some("a"));
        let e = decode(b"ClientPut\nIdentifier=b\nData\n", 5).unwrap_err();
        assert_eq!(e.error, FrameError::MissingDataLength);
        assert_eq!(e.identifier.as_deref(), Some("b"));
        let dir = b"ClientPutComplexDir\nFiles.0.Name=a\nFiles.0.DataLength=2\n\
            Files.1.Name=b\nFiles.1.UploadFrom=disk\nFiles.1.DataLength=9\n\
            Files.2.Name=c\nFiles.2.UploadFrom=direct\nFiles.2.DataLength=3\nData\nabcde";
        let (msg, used) = decode(dir, 5).unwrap().unwrap();
        assert_eq!((msg.data_len, &dir[used..]), (Some(5), &b"abcde"[..]));
        let e = decode(b"X\nDataLength=-1\nData\n", 5).unwrap_err();
        assert!(matches!(e.error, FrameError::BadDataLength(_)));
    }

    #[test]
    fn malformed_headers_are_errors_not_waits() {
        assert!(matches!(
            decode(b"Client Hello\nEndMessage\n", 0).unwrap_err().error,
            FrameError::BadName(_)
        ));
        assert!(matches!(
            decode(b"X\nIdentifier=z\nnoequals\n", 0).unwrap_err(),
            BadFrame { error: FrameError::BadLine(_), identifier: Some(z) } if z == "z"
        ));
        assert_eq!(
            decode(b"X\n\xff=1\n", 0).unwrap_err().error,
            FrameError::NotUtf8
        );
        let long = vec![b'A'; MAX_HEADER];
        assert_eq!(
            decode(&long, 0).unwrap_err().error,
            FrameError::HeaderTooLong
        );
        let mut many = b"X\n".to_vec();
        for i in 0..=MAX_FIELDS {
            many.extend_from_slice(format!("k{i}=v\n").as_bytes());
        }
        assert_eq!(
            decode(&many, 0).unwrap_err().error,
            FrameError::TooManyFields
        );
    }

    #[test]
    fn encoding_reads_back_and_cannot_be_split_by_a_value() {
        let msg = Message::new("AllData")
            .with("Identifier", "x\nEndMessage")
            .with("DataLength", 3);
        let mut with_data = msg.clone();
        with_data.data_len = Some(3);
        let bytes = with_data.encode();
        let (back, used) = decode(&bytes, 3).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(back.get("Identifier"), Some("x EndMessage"));
        assert_eq!(back.data_len, Some(3));
        assert_eq!(back.fields.len(), 2);
        let (plain, _) = decode(&msg.encode(), 0).unwrap().unwrap();
        assert_eq!(plain.get("DataLength"), Some("3"));
        assert_eq!(plain.data_len, None);
        assert_eq!(
            Message::new("A").with("b", "True").flag("b", false),
            Some(true)
        );
        assert_eq!(Message::new("A").flag("b", true), Some(true));
        assert_eq!(Message::new("A").with("b", "yes").flag("b", true), None);
    }
}
