//! The little XML that S3 speaks: replies parsed with a real XML parser
//! (quick-xml) into a small tree, and text escaped for request bodies.
//!
//! Elements are matched by their local name, whatever namespace (S3 replies
//! carry `xmlns="http://s3.amazonaws.com/doc/2006-03-01/"`) or prefix they
//! have. Comments, processing instructions and the document type are
//! skipped; CDATA sections and the predefined and numeric entities are text.
//! Elements a caller does not ask for are ignored. A reply that is not
//! well-formed, is nested too deeply or has too many elements, or lacks a
//! field the caller requires, is [`Error::InvalidResponse`] naming the
//! operation and what was wrong.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

use crate::error::quote;
use crate::{Error, Result};

/// Deepest element nesting accepted (S3 replies nest four deep at most).
const MAX_DEPTH: usize = 32;

/// Most elements accepted in one reply (a 1000-entry listing has ~10,000).
const MAX_ELEMENTS: usize = 200_000;

/// One element of a reply: its local name, its text and its child elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    operation: &'static str,
    name: String,
    text: String,
    children: Vec<Element>,
}

/// Parses a reply of `operation` and returns its root element.
pub(crate) fn parse(operation: &'static str, xml: &str) -> Result<Element> {
    let invalid = |message: String| Error::InvalidResponse { operation, message };
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    let new = |name: &[u8], count: &mut usize| -> Result<Element> {
        *count += 1;
        if *count > MAX_ELEMENTS {
            return Err(invalid(format!(
                "the XML reply has more than {MAX_ELEMENTS} elements"
            )));
        }
        Ok(Element {
            operation,
            name: String::from_utf8_lossy(name).into_owned(),
            text: String::new(),
            children: Vec::new(),
        })
    };
    let bad_xml = |e: quick_xml::Error, at: u64| {
        invalid(format!(
            "the reply is not well-formed XML (at byte {at}): {e}"
        ))
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| bad_xml(e, reader.error_position()))?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(invalid("more than one root element".into()));
            }
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(invalid(format!(
                        "the XML reply nests elements deeper than {MAX_DEPTH}"
                    )));
                }
                let el = new(start.local_name().as_ref(), &mut count)?;
                stack.push(el);
            }
            Event::Empty(start) => {
                let el = new(start.local_name().as_ref(), &mut count)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                // quick-xml checks that the end tag matches the start tag.
                let Some(el) = stack.pop() else {
                    return Err(invalid("an end tag without a start tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let text = t
                    .xml10_content()
                    .map_err(|e| bad_xml(e.into(), reader.buffer_position()))?;
                push_text(&mut stack, &text, &invalid)?;
            }
            Event::CData(t) => {
                let text = t
                    .decode()
                    .map_err(|e| bad_xml(e.into(), reader.buffer_position()))?;
                push_text(&mut stack, &text, &invalid)?;
            }
            Event::GeneralRef(r) => {
                let resolved = match r
                    .resolve_char_ref()
                    .map_err(|e| bad_xml(e, reader.buffer_position()))?
                {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r
                            .decode()
                            .map_err(|e| bad_xml(e.into(), reader.buffer_position()))?;
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| invalid(format!("unknown XML entity &{name};")))?
                            .to_string()
                    }
                };
                push_text(&mut stack, &resolved, &invalid)?;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => {
                return match (stack.last(), root) {
                    (Some(el), _) => {
                        Err(invalid(format!("the XML reply ends inside <{}>", el.name)))
                    }
                    (None, Some(root)) => Ok(root),
                    (None, None) => Err(invalid("the reply holds no XML element".into())),
                };
            }
        }
    }
}

fn push_text(stack: &mut [Element], text: &str, invalid: &impl Fn(String) -> Error) -> Result<()> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(text);
            Ok(())
        }
        // Whitespace around the root element is allowed; anything else is not XML.
        None if text.trim().is_empty() => Ok(()),
        None => Err(invalid("text outside the root element".into())),
    }
}

impl Element {
    /// The element's local name (without namespace prefix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The element's text (entities resolved, CDATA included, comments not).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first child element called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child element called `name`, in document order.
    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first element called `name` at any depth below this one, in
    /// document order.
    pub fn descendant(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| {
            if c.name == name {
                Some(c)
            } else {
                c.descendant(name)
            }
        })
    }

    /// The text of the first child called `name`, if there is one.
    pub fn opt(&self, name: &str) -> Option<&str> {
        self.child(name).map(Element::text)
    }

    /// The text of the child called `name`; its absence is an error.
    pub fn req(&self, name: &str) -> Result<&str> {
        self.opt(name)
            .ok_or_else(|| self.error(format!("<{}> has no <{name}>", self.name)))
    }

    /// The child called `name`, parsed; its absence or a value that does not
    /// parse is an error.
    pub fn req_parse<T: std::str::FromStr>(&self, name: &str) -> Result<T> {
        let text = self.req(name)?;
        text.trim().parse().map_err(|_| {
            self.error(format!(
                "<{name}> of <{}> is not a valid value: {}",
                self.name,
                quote(text)
            ))
        })
    }

    /// The child called `name`, parsed, if there is one; a value that does
    /// not parse is an error.
    pub fn opt_parse<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        match self.child(name) {
            None => Ok(None),
            Some(_) => self.req_parse(name).map(Some),
        }
    }

    /// A boolean child (`true`/`false`); a missing one is `false`.
    pub fn flag(&self, name: &str) -> Result<bool> {
        Ok(self.opt_parse(name)?.unwrap_or(false))
    }

    /// Checks that this (root) element is called `name`.
    pub fn expect(self, name: &str) -> Result<Element> {
        if self.name == name {
            Ok(self)
        } else {
            Err(self.error(format!("expected <{name}>, got <{}>", self.name)))
        }
    }

    /// Checks that this (root) element has one of `names` (servers that
    /// name a reply's root otherwise, with the same content).
    pub fn expect_one_of(self, names: &[&str]) -> Result<Element> {
        if names.contains(&self.name.as_str()) {
            Ok(self)
        } else {
            let name = names.first().copied().unwrap_or_default();
            Err(self.error(format!("expected <{name}>, got <{}>", self.name)))
        }
    }

    /// An [`Error::InvalidResponse`] of this reply's operation.
    pub fn error(&self, message: String) -> Error {
        Error::InvalidResponse {
            operation: self.operation,
            message,
        }
    }
}

/// The text of the first element called `name` anywhere in `xml` (the root
/// included), if `xml` parses: for replies read leniently, such as an error
/// document whose fields are looked at but not required.
pub(crate) fn text(xml: &str, name: &str) -> Option<String> {
    let doc = parse("reply", xml).ok()?;
    let el = if doc.name() == name {
        &doc
    } else {
        doc.descendant(name)?
    };
    Some(el.text().to_string())
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
            // Carriage returns would be read back as line feeds.
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = r#"xmlns="http://s3.amazonaws.com/doc/2006-03-01/""#;

    fn message(e: Error) -> String {
        match e {
            Error::InvalidResponse { operation, message } => format!("{operation}: {message}"),
            e => panic!("not InvalidResponse: {e:?}"),
        }
    }

    #[test]
    fn namespaced_document_with_entities() {
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult {NS}><Bucket>b</Bucket>
  <Part><PartNumber>1</PartNumber><ETag>&quot;ab&quot;</ETag><Size>5</Size></Part>
  <Part><PartNumber>2</PartNumber><ETag>&#34;cd&#x22;</ETag><Size>6</Size><Unknown><Deep>x</Deep></Unknown></Part>
  <Parts/><Key>a&amp;b &lt;c&gt; &apos;é&apos;</Key></ListPartsResult>"#
        );
        let root = parse("ListParts", &xml)
            .unwrap()
            .expect("ListPartsResult")
            .unwrap();
        let parts: Vec<&Element> = root.children("Part").collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].req("ETag").unwrap(), "\"ab\"");
        assert_eq!(parts[1].req("ETag").unwrap(), "\"cd\"");
        assert_eq!(parts[1].req_parse::<u64>("Size").unwrap(), 6);
        assert_eq!(root.req("Key").unwrap(), "a&b <c> 'é'");
        assert_eq!(root.opt("Parts"), Some(""));
        assert_eq!(root.opt("Missing"), None);
        // A prefixed namespace is matched by local name too.
        let prefixed =
            r#"<s3:R xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/"><s3:Key>k</s3:Key></s3:R>"#;
        assert_eq!(parse("Op", prefixed).unwrap().req("Key").unwrap(), "k");
    }

    #[test]
    fn comments_and_cdata_holding_element_like_text_are_not_elements() {
        let xml = format!(
            "<InitiateMultipartUploadResult {NS}>\
             <!-- <UploadId>from-a-comment</UploadId> -->\
             <Key><![CDATA[<UploadId>in-cdata</UploadId> & more]]></Key>\
             <UploadId>real</UploadId></InitiateMultipartUploadResult>"
        );
        let root = parse("CreateMultipartUpload", &xml).unwrap();
        assert_eq!(root.children("UploadId").count(), 1);
        assert_eq!(root.req("UploadId").unwrap(), "real");
        assert_eq!(
            root.req("Key").unwrap(),
            "<UploadId>in-cdata</UploadId> & more"
        );
        // Only a comment and CDATA: no UploadId at all.
        let xml = "<R><!--<UploadId>x</UploadId>--><K><![CDATA[<UploadId>y</UploadId>]]></K></R>";
        let root = parse("CreateMultipartUpload", xml).unwrap();
        assert!(root.opt("UploadId").is_none());
    }

    #[test]
    fn missing_required_field_names_operation_and_field() {
        let xml = "<ListPartsResult><Part><PartNumber>1</PartNumber><Size>3</Size></Part></ListPartsResult>";
        let root = parse("ListParts", xml).unwrap();
        let part = root.child("Part").unwrap();
        let msg = message(part.req("ETag").unwrap_err());
        assert!(msg.starts_with("ListParts:"), "{msg}");
        assert!(msg.contains("<ETag>") && msg.contains("<Part>"), "{msg}");
        let msg = message(
            parse("ListParts", "<R><Size>12x</Size></R>")
                .unwrap()
                .req_parse::<u64>("Size")
                .unwrap_err(),
        );
        assert!(msg.contains("<Size>") && msg.contains("12x"), "{msg}");
        let msg = message(
            parse("ListParts", "<R/>")
                .unwrap()
                .expect("ListPartsResult")
                .unwrap_err(),
        );
        assert!(msg.contains("expected <ListPartsResult>"), "{msg}");
    }

    #[test]
    fn malformed_and_hostile_replies_are_errors() {
        for bad in [
            "",
            "not xml",
            "<R><A></R>",
            "<R>",
            "<R>&bogus;</R>",
            "<R></R><S/>trailing",
            "<!DOCTYPE R [<!ENTITY e \"boom\">]><R>&e;</R>",
        ] {
            let msg = message(parse("Op", bad).unwrap_err());
            assert!(msg.starts_with("Op: "), "{bad:?}: {msg}");
        }
        // Deep nesting: an error, not a stack overflow.
        let deep = "<a>".repeat(100_000) + &"</a>".repeat(100_000);
        assert!(message(parse("Op", &deep).unwrap_err()).contains("deeper"));
        // Many elements: an error, not unbounded memory.
        let wide = format!("<R>{}</R>", "<a/>".repeat(MAX_ELEMENTS + 1));
        assert!(message(parse("Op", &wide).unwrap_err()).contains("more than"));
        // A long text is fine.
        let long = format!("<R><K>{}</K></R>", "x".repeat(1 << 20));
        assert_eq!(parse("Op", &long).unwrap().req("K").unwrap().len(), 1 << 20);
    }

    #[test]
    fn escape_round_trips() {
        let s = "a&b<c>\"d'e é\r\n]]>";
        let xml = format!("<R>{}</R>", escape(s));
        assert_eq!(parse("Op", &xml).unwrap().text(), s);
    }

    /// Property-style: random mutations of valid S3 replies (a bounded
    /// number, from a fixed seed) never panic, and every error is an
    /// `InvalidResponse` of the operation with a short message; what parses
    /// can be walked as the callers walk it.
    #[test]
    fn mutated_replies_never_panic_and_errors_stay_short() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        let valid = [
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult {NS}>\
                 <Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount>\
                 <IsTruncated>true</IsTruncated><EncodingType>url</EncodingType>\
                 <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>\
                 <Contents><Key>p/a%20b</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>\
                 <ETag>&quot;0123&quot;</ETag><Size>3</Size></Contents>\
                 <Contents><Key><![CDATA[p/c&d]]></Key><Size>18446744073709551615</Size></Contents>\
                 </ListBucketResult>"
            ),
            format!(
                "<ListPartsResult {NS}><UploadId>u</UploadId><IsTruncated>false</IsTruncated>\
                 <NextPartNumberMarker>2</NextPartNumberMarker>\
                 <Part><PartNumber>1</PartNumber><ETag>\"e1\"</ETag><Size>5242880</Size>\
                 <ChecksumCRC64NVME>AAAAAAAAAAA=</ChecksumCRC64NVME></Part></ListPartsResult>"
            ),
            format!(
                "<InitiateMultipartUploadResult {NS}><Bucket>b</Bucket><Key>k</Key>\
                 <UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>"
            ),
            format!(
                "<CompleteMultipartUploadResult {NS}><Location>http://x/b/k</Location>\
                 <Bucket>b</Bucket><Key>k</Key><ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag>\
                 </CompleteMultipartUploadResult>"
            ),
            "<Error><Code>SlowDown</Code><Message>Please &amp; reduce</Message>\
             <RequestId>4442587FB7D0A2F9</RequestId><Region>eu-west-3</Region></Error>"
                .to_string(),
            format!(
                "<DeleteResult {NS}><!-- c --><Error><Key>k&#x20;1</Key><Code>AccessDenied</Code>\
                 <Message>no</Message></Error></DeleteResult>"
            ),
        ];
        const PIECES: [&str; 12] = [
            "<",
            ">",
            "&",
            "&amp;",
            "&#0;",
            "&#x110000;",
            "]]>",
            "<!--",
            "<![CDATA[",
            "</",
            "/>",
            "\u{0}",
        ];
        let mut rng = StdRng::seed_from_u64(0x5339_7075_6d70);
        let mut parsed = 0;
        for doc in &valid {
            for _ in 0..400 {
                let mut bytes = doc.as_bytes().to_vec();
                for _ in 0..rng.random_range(1..=4) {
                    let at = rng.random_range(0..=bytes.len());
                    match rng.random_range(0..6) {
                        // Flip a byte.
                        0 if at < bytes.len() => bytes[at] = rng.random(),
                        // Cut the rest (a truncated reply).
                        1 => bytes.truncate(at),
                        // Delete a run.
                        2 => {
                            let end = (at + rng.random_range(1..32)).min(bytes.len());
                            bytes.drain(at..end);
                        }
                        // Insert an XML piece.
                        3 => {
                            let piece = PIECES[rng.random_range(0..PIECES.len())];
                            bytes.splice(at..at, piece.bytes());
                        }
                        // Repeat a run (duplicated elements, long names).
                        4 => {
                            let end = (at + rng.random_range(1..64)).min(bytes.len());
                            let run = bytes[at..end].to_vec();
                            bytes.splice(at..at, run);
                        }
                        // Swap two bytes.
                        _ if bytes.len() > 1 => {
                            let (last, other) = (bytes.len() - 1, rng.random_range(0..bytes.len()));
                            bytes.swap(at.min(last), other);
                        }
                        _ => {}
                    }
                }
                // Replies are read as text: invalid UTF-8 is lost lossily first.
                let text = String::from_utf8_lossy(&bytes);
                match parse("Op", &text) {
                    Ok(root) => {
                        parsed += 1;
                        // Walk it as the callers do; errors are fine, panics are not.
                        for c in root.children("Contents").chain(root.children("Part")) {
                            let _ = c.req("Key");
                            let _ = c.req_parse::<u64>("Size");
                            let _ = c.opt_parse::<u32>("PartNumber");
                        }
                        let _ = root.flag("IsTruncated");
                        let _ = root.descendant("Region");
                        let _ = text_of(&root);
                    }
                    Err(e) => {
                        let msg = message(e);
                        assert!(msg.starts_with("Op: "), "{msg}");
                        assert!(
                            msg.len() < 400,
                            "a short message ({} bytes): {msg}",
                            msg.len()
                        );
                    }
                }
            }
        }
        // The mutations are not all fatal: some replies still parse.
        assert!(parsed > 50, "{parsed}");
    }

    fn text_of(e: &Element) -> usize {
        e.text().len() + e.children.iter().map(text_of).sum::<usize>()
    }
}
