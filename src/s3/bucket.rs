//! Operations on buckets: HeadBucket, ListBuckets, DeleteBucket
//! (CreateBucket is with the object operations, in `object`).

use ureq::http::Method;

use crate::client::{Request, read_text};
use crate::s3::object::validate_bucket;
use crate::s3::xml;
use crate::{Client, Result};

/// A bucket, as [`Client::list_buckets`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BucketInfo {
    /// The bucket's name.
    pub name: String,
    /// `CreationDate`, as the server formatted it (ISO 8601), when it sent one.
    pub creation_date: Option<String>,
}

impl Client {
    /// Whether the bucket exists and the credentials may use it: `Ok` if
    /// so; a missing bucket is an error whose
    /// [`is_not_found`](crate::Error::is_not_found) is true, a forbidden
    /// one [`ErrorKind::AccessDenied`](crate::ErrorKind::AccessDenied).
    ///
    /// ```no_run
    /// # let client = s3pump::Client::from_env()?;
    /// match client.head_bucket("backups") {
    ///     Ok(()) => println!("there"),
    ///     Err(e) if e.is_not_found() => client.create_bucket("backups")?,
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn head_bucket(&self, bucket: &str) -> Result<()> {
        validate_bucket(bucket)?;
        let req = Request::new("HeadBucket", Method::HEAD, bucket, None);
        self.send_retrying(self.conn(), &req, true)?;
        Ok(())
    }

    /// Deletes a bucket, which must be empty (else 409 `BucketNotEmpty`).
    pub fn delete_bucket(&self, bucket: &str) -> Result<()> {
        validate_bucket(bucket)?;
        let req = Request::new("DeleteBucket", Method::DELETE, bucket, None);
        self.send_retrying(self.conn(), &req, true)?;
        Ok(())
    }

    /// The buckets the credentials own (ListBuckets, every page).
    ///
    /// ```no_run
    /// # let client = s3pump::Client::from_env()?;
    /// for b in client.list_buckets()? {
    ///     println!("{}", b.name);
    /// }
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        const OP: &str = "ListBuckets";
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // ListBuckets is on the service, not on a bucket: the empty
            // bucket name makes the request `GET /`.
            let mut req = Request::new(OP, Method::GET, "", None);
            if let Some(t) = &token {
                req = req.query("continuation-token", t.clone());
            }
            let mut response = self.send_retrying(self.conn(), &req, true)?;
            let text = read_text(OP, &mut response)?;
            let root = xml::parse(OP, &text)?.expect("ListAllMyBucketsResult")?;
            if let Some(buckets) = root.child("Buckets") {
                for b in buckets.children("Bucket") {
                    out.push(BucketInfo {
                        name: b.req("Name")?.to_owned(),
                        creation_date: b.opt("CreationDate").map(str::to_owned),
                    });
                }
            }
            match root.opt("ContinuationToken").filter(|t| !t.is_empty()) {
                Some(next) if token.as_deref() != Some(next) => token = Some(next.to_owned()),
                Some(next) => {
                    return Err(root.error(format!(
                        "a ListBuckets ContinuationToken {next:?} that does not advance"
                    )));
                }
                None => return Ok(out),
            }
        }
    }
}
