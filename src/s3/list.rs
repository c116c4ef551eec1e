//! Many objects: listing a prefix (ListObjectsV2, page by page as the
//! caller iterates), or a "directory" (with a delimiter: objects and
//! common prefixes), and deleting keys in batches (DeleteObjects).

use std::collections::VecDeque;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest, Md5};
use ureq::http::Method;

use crate::client::{Request, read_text, s3_error};
use crate::error::quote;
use crate::s3::object::{validate_bucket, validate_key};
use crate::s3::pages::Pages;
use crate::s3::xml;
use crate::{Client, Error, PayloadSigning, Result};

/// Most keys S3 lists in one page and deletes in one DeleteObjects request.
const MAX_PAGE: u32 = 1000;

/// One object of a listing, as [`Client::list_objects`] yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectSummary {
    /// The object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag, exactly as the server sent it (quotes included), when it sent one.
    pub etag: Option<String>,
    /// `LastModified`, as the server formatted it (ISO 8601), when it sent one.
    pub last_modified: Option<String>,
}

/// One entry of a listing by "directory" ([`Client::list_directory`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListEntry {
    /// An object directly under the prefix.
    Object(ObjectSummary),
    /// A common prefix: the keys under it (up to and including the next
    /// delimiter, e.g. `photos/2026/`) rolled up into one entry, a
    /// "directory".
    Prefix(String),
}

/// The entries of a listing by "directory", objects and common prefixes in
/// key order, fetched a page at a time: see [`Client::list_directory`].
///
/// Each item is a `Result`: a failed page request (after the client's
/// retries) is yielded once as an error and ends the iteration.
#[derive(Debug)]
pub struct ListEntries(ListObjects);

impl ListEntries {
    /// Keys and prefixes asked for per ListObjectsV2 request (1 to 1000).
    ///
    /// Defaults to 1000.
    pub fn page_size(self, keys: u32) -> Self {
        ListEntries(self.0.page_size(keys))
    }
}

impl Iterator for ListEntries {
    type Item = Result<ListEntry>;

    fn next(&mut self) -> Option<Result<ListEntry>> {
        self.0.next_entry()
    }
}

/// The objects under a prefix, fetched a page at a time as the iteration
/// reaches the end of the previous page: see [`Client::list_objects`].
///
/// Each item is a `Result`: a failed page request (after the client's
/// retries) is yielded once as an error and ends the iteration.
#[derive(Debug)]
pub struct ListObjects {
    client: Client,
    bucket: String,
    prefix: String,
    page_size: u32,
    /// Set for a listing by "directory" ([`ListEntries`]).
    delimiter: Option<String>,
    page: VecDeque<ListEntry>,
    /// The continuation token of the next page; `None` before the first.
    token: Option<String>,
    /// The checks that make the listing end.
    pages: Pages,
    /// The greatest key listed so far.
    last_key: Option<String>,
    done: bool,
}

impl ListObjects {
    /// Keys asked for per ListObjectsV2 request (1 to 1000; the server may
    /// send fewer).
    ///
    /// Defaults to 1000.
    pub fn page_size(mut self, keys: u32) -> Self {
        self.page_size = keys.clamp(1, MAX_PAGE);
        self
    }

    /// Fetches the next page into `self.page`.
    fn fetch(&mut self) -> Result<()> {
        const OP: &str = "ListObjectsV2";
        validate_bucket(&self.bucket)?;
        if self.prefix.len() > 1024 {
            return Err(Error::invalid(format!(
                "prefix is {} bytes long; S3 keys are at most 1024",
                self.prefix.len()
            )));
        }
        let mut req = Request::new(OP, Method::GET, &self.bucket, None)
            .query("list-type", "2")
            // Keys are sent URL-encoded so that any key survives XML 1.0
            // (which cannot hold most control characters), as the AWS SDKs do.
            .query("encoding-type", "url")
            .query("max-keys", self.page_size.to_string());
        if !self.prefix.is_empty() {
            req = req.query("prefix", self.prefix.clone());
        }
        if let Some(t) = &self.token {
            req = req.query("continuation-token", t.clone());
        }
        if let Some(d) = &self.delimiter {
            req = req.query("delimiter", d.clone());
        }
        let client = &self.client;
        let mut response = client.send_retrying(client.conn(), &req, true)?;
        let text = read_text(OP, &mut response)?;
        let root = xml::parse(OP, &text)?.expect("ListBucketResult")?;
        let encoded = match root.opt("EncodingType") {
            None => false,
            Some(e) if e.eq_ignore_ascii_case("url") => true,
            Some(e) => return Err(root.error(format!("unknown <EncodingType> {}", quote(e)))),
        };
        let decode = |c: &xml::Element, name: &str| -> Result<String> {
            let raw = c.req(name)?;
            if !encoded {
                return Ok(raw.to_string());
            }
            url_decode(raw).ok_or_else(|| {
                c.error(format!(
                    "<{name}> {} is not valid URL encoding of UTF-8",
                    quote(raw)
                ))
            })
        };
        // The whole page is checked before any of it is yielded.
        let mut items = Vec::new();
        for c in root.children("Contents") {
            items.push(ListEntry::Object(ObjectSummary {
                key: decode(c, "Key")?,
                size: c.req_parse("Size")?,
                etag: c.opt("ETag").map(str::to_string),
                last_modified: c.opt("LastModified").map(str::to_string),
            }));
        }
        if self.delimiter.is_some() {
            for p in root.children("CommonPrefixes") {
                items.push(ListEntry::Prefix(decode(p, "Prefix")?));
            }
            // Objects and prefixes in one key order, as S3 lists them.
            items.sort_by(|a, b| entry_key(a).cmp(entry_key(b)));
        }
        let greatest = items.iter().map(entry_key).max();
        let added = greatest.is_some_and(|g| self.last_key.as_deref().is_none_or(|l| g > l));
        if added {
            self.last_key = greatest.map(str::to_string);
        }
        if root.flag("IsTruncated")? {
            let next = root.opt("NextContinuationToken");
            self.token = Some(self.pages.next(next, added)?);
        } else {
            self.done = true;
        }
        self.page.extend(items);
        Ok(())
    }
}

impl ListObjects {
    /// The next object or common prefix, fetching a page when needed.
    fn next_entry(&mut self) -> Option<Result<ListEntry>> {
        loop {
            if let Some(entry) = self.page.pop_front() {
                return Some(Ok(entry));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

/// The key of an object, the prefix of a common prefix.
fn entry_key(entry: &ListEntry) -> &str {
    match entry {
        ListEntry::Object(o) => &o.key,
        ListEntry::Prefix(p) => p,
    }
}

impl Iterator for ListObjects {
    type Item = Result<ObjectSummary>;

    fn next(&mut self) -> Option<Result<ObjectSummary>> {
        loop {
            // Without a delimiter there are objects only.
            match self.next_entry()? {
                Ok(ListEntry::Object(o)) => return Some(Ok(o)),
                Ok(ListEntry::Prefix(_)) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space), as S3
/// encodes keys for `encoding-type=url`; `None` if it is not valid.
fn url_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// What [`Client::delete_objects`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteObjectsOutput {
    /// Keys deleted: every key sent that the server reported no error for
    /// (deleting a missing key succeeds, as in S3).
    pub deleted: u64,
    /// The keys the server refused to delete, with its reasons.
    pub errors: Vec<DeleteError>,
}

/// One key that DeleteObjects did not delete.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteError {
    /// The key.
    pub key: String,
    /// The S3 error code, such as `AccessDenied`.
    pub code: String,
    /// The server's message.
    pub message: String,
}

impl Client {
    /// Lists the objects whose keys start with `prefix` (all of them for an
    /// empty prefix), in key order, following continuation tokens as the
    /// iteration goes: a page is fetched only when the previous one is used
    /// up. Keys are asked for URL-encoded and decoded, so keys with any
    /// characters come back exactly.
    ///
    /// A listing always ends: a truncated page without a continuation
    /// token, a token given before in the same listing, or a truncated page
    /// with no key past the previous pages' is an
    /// [`Error::InvalidResponse`] naming the bucket and prefix.
    ///
    /// ```no_run
    /// # fn demo(client: &s3pump::Client) -> s3pump::Result<()> {
    /// for object in client.list_objects("bucket", "photos/") {
    ///     let object = object?;
    ///     println!("{} {}", object.size, object.key);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn list_objects(&self, bucket: &str, prefix: &str) -> ListObjects {
        ListObjects {
            client: self.clone(),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            page_size: MAX_PAGE,
            delimiter: None,
            page: VecDeque::new(),
            token: None,
            pages: Pages::new(
                "ListObjectsV2",
                "<NextContinuationToken>",
                format!("bucket {}, prefix {}", quote(bucket), quote(prefix)),
            ),
            last_key: None,
            done: false,
        }
    }

    /// Lists `prefix` as a "directory": the objects directly under it and,
    /// rolled up into one [`ListEntry::Prefix`] each, the common prefixes
    /// of the keys that have `delimiter` after the prefix (ListObjectsV2
    /// with `delimiter`), in key order, page by page as the iteration goes.
    /// With `delimiter` `"/"` and `prefix` `"photos/"`: `photos/a.jpg`, and
    /// `photos/2026/` for every key under it.
    ///
    /// ```no_run
    /// # fn demo(client: &s3pump::Client) -> s3pump::Result<()> {
    /// use s3pump::ListEntry;
    /// for entry in client.list_directory("bucket", "photos/", "/") {
    ///     match entry? {
    ///         ListEntry::Prefix(p) => println!("PRE {p}"),
    ///         ListEntry::Object(o) => println!("{} {}", o.size, o.key),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn list_directory(&self, bucket: &str, prefix: &str, delimiter: &str) -> ListEntries {
        let mut list = self.list_objects(bucket, prefix);
        list.delimiter = Some(delimiter.to_owned()).filter(|d| !d.is_empty());
        ListEntries(list)
    }

    /// Deletes `keys` with DeleteObjects, up to 1000 keys per request, in
    /// quiet mode (the server reports only failures). Keys the server
    /// refuses are listed in the output's `errors`; a request that fails as
    /// a whole (after retries) is the error, and the keys of later batches are
    /// not sent.
    ///
    /// Every key is checked (1 to 1024 bytes) before anything is sent.
    pub fn delete_objects<I>(&self, bucket: &str, keys: I) -> Result<DeleteObjectsOutput>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        validate_bucket(bucket)?;
        let keys: Vec<I::Item> = keys.into_iter().collect();
        for key in &keys {
            validate_key(key.as_ref())?;
        }
        let mut out = DeleteObjectsOutput::default();
        for batch in keys.chunks(MAX_PAGE as usize) {
            let errors = self.delete_batch(bucket, batch)?;
            out.deleted += (batch.len() - errors.len()) as u64;
            out.errors.extend(errors);
        }
        Ok(out)
    }

    /// One DeleteObjects request.
    fn delete_batch(&self, bucket: &str, keys: &[impl AsRef<str>]) -> Result<Vec<DeleteError>> {
        const OP: &str = "DeleteObjects";
        let mut body = String::from("<Delete><Quiet>true</Quiet>");
        for key in keys {
            body.push_str("<Object><Key>");
            body.push_str(&xml::escape(key.as_ref()));
            body.push_str("</Key></Object>");
        }
        body.push_str("</Delete>");
        // S3 requires Content-MD5 (or a checksum header) on DeleteObjects.
        let md5 = BASE64.encode(Md5::digest(body.as_bytes()));
        let req = Request::new(OP, Method::POST, bucket, None)
            .query("delete", "")
            .header("content-md5", md5)
            .header("content-type", "application/xml")
            .body(body.as_bytes(), PayloadSigning::Signed);
        let reply = self.retrying(&req, None, true, |_| {
            let mut response = self.send(self.conn(), &req)?;
            let text = read_text(OP, &mut response)?;
            let root = xml::parse(OP, &text)?;
            if root.name() == "Error" {
                // A 200 reply can be an error document.
                return Err(s3_error(
                    response.status().as_u16(),
                    response.headers(),
                    &text,
                ));
            }
            root.expect("DeleteResult")
        })?;
        let mut errors = Vec::new();
        for e in reply.children("Error") {
            errors.push(DeleteError {
                key: e.req("Key")?.to_string(),
                code: e.req("Code")?.to_string(),
                message: e.opt("Message").unwrap_or_default().to_string(),
            });
        }
        if errors.len() > keys.len() {
            return Err(reply.error(format!("{} errors for {} keys", errors.len(), keys.len())));
        }
        Ok(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_decoding_as_s3_encodes() {
        assert_eq!(url_decode("a+b%2Bc%20d").unwrap(), "a b+c d");
        assert_eq!(url_decode("%C3%BC/%E6%97%A5").unwrap(), "ü/日");
        assert_eq!(url_decode("plain/key.txt").unwrap(), "plain/key.txt");
        assert_eq!(url_decode("%01ctl").unwrap(), "\u{1}ctl");
        for bad in ["%", "%2", "%zz", "%FF"] {
            assert_eq!(url_decode(bad), None, "{bad}");
        }
    }
}
