//! What the CLI prints cannot drive the terminal: control characters in
//! keys, upload ids and server messages are shown escaped, as `ls -b` does
//! (`\e`, `\a`, `\n`, `\x01`…), and JSON lines keep JSON escapes.

use std::fmt::Write;

/// A field (a key, an upload id) as `ls -b` shows it: a backslash is `\\`,
/// a control character (C0, DEL, C1) its escape; nothing else changes.
pub fn field(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => push_control(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

/// A message line: control characters escaped as in [`field`], backslashes
/// left as they are (a message quotes keys with Rust's `{:?}` escapes
/// already, which this must not double).
pub fn line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            push_control(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// A JSON line with the control characters JSON allows raw in a string
/// (DEL and the C1 set, which some terminals obey) written as `\u00XX`;
/// the rest is serde_json's (which escapes C0 already).
pub fn json(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

fn push_control(out: &mut String, c: char) {
    let short = match c {
        '\x07' => "\\a",
        '\x08' => "\\b",
        '\t' => "\\t",
        '\n' => "\\n",
        '\x0b' => "\\v",
        '\x0c' => "\\f",
        '\r' => "\\r",
        '\x1b' => "\\e",
        _ => "",
    };
    if short.is_empty() {
        let _ = write!(out, "\\x{:02x}", c as u32);
    } else {
        out.push_str(short);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(field("a\x1b]0;pwned\x07b"), "a\\e]0;pwned\\ab");
        assert_eq!(
            field("x\ny\r\0\x01\x7f\u{9b}z"),
            "x\\ny\\r\\x00\\x01\\x7f\\x9bz"
        );
        assert_eq!(field("back\\slash ü 日"), "back\\\\slash ü 日");
        assert_eq!(line("key \"a\\nb\": \x1b[2J"), "key \"a\\nb\": \\e[2J");
        // serde_json leaves DEL and C1 raw; they become \u escapes.
        let j = serde_json::to_string("a\x1b\u{9b}\x7f").unwrap();
        assert_eq!(json(&j), "\"a\\u001b\\u009b\\u007f\"");
        for s in [field("\x1b\x07\n\0"), line("\x1b\x07\n\0"), json(&j)] {
            assert!(!s.chars().any(char::is_control), "{s:?}");
        }
    }
}
