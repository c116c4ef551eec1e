//! Listings that always end: the checks every paginated listing
//! (ListObjectsV2, ListParts, ListMultipartUploads) applies to a truncated
//! page before asking for the next one.
//!
//! A truncated page must name where the next page starts (a continuation
//! token or markers), that place must not have been given before in the
//! same listing (a server cycling A, B, A, B… would loop forever), and the
//! page must add something past what came before (a server handing out
//! fresh tokens for the same entries would too). Each is an
//! [`Error::InvalidResponse`] naming the listing.

use std::collections::HashSet;

use crate::error::quote;
use crate::{Error, Result};

/// The state of one listing's pagination.
#[derive(Debug)]
pub(crate) struct Pages {
    operation: &'static str,
    /// The element that says where the next page starts, for errors.
    marker: &'static str,
    /// What is listed, for errors: `bucket "b", prefix "p/"`.
    what: String,
    /// Every next-page place given so far.
    seen: HashSet<String>,
    /// Pages received so far.
    pages: u64,
}

impl Pages {
    pub fn new(operation: &'static str, marker: &'static str, what: String) -> Pages {
        Pages {
            operation,
            marker,
            what,
            seen: HashSet::new(),
            pages: 0,
        }
    }

    /// Checks a truncated page: `next` is where the server says the next
    /// page starts (`None` or empty when it said nothing), `added` whether
    /// the page brought any entry past the ones before. Returns `next`.
    pub fn next(&mut self, next: Option<&str>, added: bool) -> Result<String> {
        self.pages += 1;
        let next = match next {
            Some(n) if !n.is_empty() => n,
            _ => {
                return Err(self.error(format!(
                    "page {} is truncated but has no {}",
                    self.pages, self.marker
                )));
            }
        };
        if !self.seen.insert(next.to_string()) {
            return Err(self.error(format!(
                "page {} gives the {} {} again",
                self.pages,
                self.marker,
                quote(next)
            )));
        }
        if !added {
            return Err(self.error(format!(
                "page {} is truncated but adds no entry past the previous pages",
                self.pages
            )));
        }
        Ok(next.to_string())
    }

    fn error(&self, what: String) -> Error {
        Error::InvalidResponse {
            operation: self.operation,
            message: format!("listing {}: {what}; the listing would never end", self.what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_ends_on_a_repeated_a_missing_or_a_useless_token() {
        let mut p = Pages::new(
            "ListObjectsV2",
            "<NextContinuationToken>",
            "bucket \"b\", prefix \"p/\"".into(),
        );
        assert_eq!(p.next(Some("A"), true).unwrap(), "A");
        assert_eq!(p.next(Some("B"), true).unwrap(), "B");
        let e = p.next(Some("A"), true).unwrap_err().to_string();
        assert!(e.contains("bucket \"b\", prefix \"p/\""), "{e}");
        assert!(
            e.contains("page 3 gives the <NextContinuationToken> \"A\" again"),
            "{e}"
        );

        let mut p = Pages::new("ListParts", "<NextPartNumberMarker>", "x".into());
        for none in [None, Some("")] {
            let mut p = Pages::new("ListParts", "<NextPartNumberMarker>", "x".into());
            let e = p.next(none, true).unwrap_err().to_string();
            assert!(
                e.contains("page 1 is truncated but has no <NextPartNumberMarker>"),
                "{e}"
            );
        }
        let e = p.next(Some("C"), false).unwrap_err().to_string();
        assert!(e.contains("adds no entry"), "{e}");
    }
}
