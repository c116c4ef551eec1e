//! The little XML that S3 speaks: finding elements in replies and escaping
//! text in requests. S3 replies are flat and well known, so a full parser
//! would buy nothing here.

/// The text of every `<name>…</name>` element, in document order, unescaped
/// only by [`text`]; nested elements come back as raw XML.
pub(crate) fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        // Must be exactly this element: `<name>`, `<name attr…>` or `<name/>`.
        let Some(gt) = after.find('>') else { break };
        let head = &after[..gt];
        if !(head.is_empty() || head.starts_with(char::is_whitespace) || head == "/") {
            rest = after;
            continue;
        }
        if head.ends_with('/') {
            out.push("");
            rest = &after[gt + 1..];
            continue;
        }
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

/// The unescaped text of the first `<name>` element.
pub(crate) fn text(xml: &str, name: &str) -> Option<String> {
    elements(xml, name).first().map(|t| unescape(t))
}

/// Escapes text for use inside an XML element.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Resolves the five predefined entities and numeric character references.
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_elements_and_unescapes() {
        let xml = r#"<?xml version="1.0"?><R xmlns="x"><Part><PartNumber>1</PartNumber><ETag>&quot;ab&quot;</ETag></Part><Part><PartNumber>2</PartNumber><ETag>&#34;cd&#x22;</ETag></Part><Parts/><Key>a&amp;b &lt;c&gt;</Key></R>"#;
        let parts = elements(xml, "Part");
        assert_eq!(parts.len(), 2);
        assert_eq!(text(parts[0], "ETag").unwrap(), "\"ab\"");
        assert_eq!(text(parts[1], "ETag").unwrap(), "\"cd\"");
        assert_eq!(text(xml, "Key").unwrap(), "a&b <c>");
        assert_eq!(elements(xml, "Parts"), vec![""]);
        assert_eq!(text(xml, "Missing"), None);
    }

    #[test]
    fn escape_round_trips() {
        let s = "a&b<c>\"d'e é";
        assert_eq!(unescape(&escape(s)), s);
    }
}
