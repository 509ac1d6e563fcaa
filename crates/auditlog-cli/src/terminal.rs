//! Text for a terminal: bytes that could drive it (C0 and C1 controls, DEL,
//! and so every escape sequence) are shown, never sent.

use std::borrow::Cow;
use std::fmt::Write;

/// `s` with every control character written out visibly: `\n`, `\r`, `\t`,
/// `\x1b`, `\x7f`, `\u{9b}` and so on. Other text, backslashes included,
/// is unchanged, so ordinary names read as they are.
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// This machine's host name (`-` if it has none).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes and we read only up to the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "-".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_not_sent() {
        assert_eq!(visible("alice"), "alice");
        assert_eq!(visible(r"DOMAIN\bob"), r"DOMAIN\bob");
        assert_eq!(
            visible("\x1b]0;owned\x07\x1b[31mred\r\nnext\u{9b}2J\x7f"),
            r"\x1b]0;owned\x07\x1b[31mred\r\nnext\u{9b}2J\x7f"
        );
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let shown = visible(&c.to_string()).into_owned();
            assert!(!shown.chars().any(char::is_control), "{c:?} -> {shown:?}");
        }
    }
}
