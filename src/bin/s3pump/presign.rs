//! `s3pump presign s3://BUCKET/KEY [--expires-in SECONDS] [--method GET|PUT]`:
//! prints a presigned URL, alone, on standard output.

use std::time::Duration;

use clap::{Args, ValueEnum};
use s3pump::{PresignArgs, PresignOperation};

use crate::args::{Connection, S3Url, parse_s3_url};
use crate::{Done, client, failure};

/// `s3pump presign s3://BUCKET/KEY`.
#[derive(Debug, Args)]
pub struct Presign {
    /// The object the URL is for (it need not exist).
    #[arg(value_name = "s3://BUCKET/KEY", value_parser = parse_s3_url)]
    pub url: S3Url,
    /// How long the URL stays valid: 1 to 604800 (7 days).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(1..=604_800),
        allow_hyphen_values = true
    )]
    pub expires_in: u64,
    /// GET downloads the object (curl URL), PUT uploads one (curl -T FILE URL).
    #[arg(long, value_enum, default_value_t = Method::Get, ignore_case = true)]
    pub method: Method,
    #[command(flatten)]
    pub connection: Connection,
}

/// `--method` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Method {
    /// Download the object.
    #[value(name = "GET")]
    Get,
    /// Upload (create or replace) the object.
    #[value(name = "PUT")]
    Put,
}

/// Shown at the end of `presign --help`.
pub const PRESIGN_HELP: &str = "\
The URL is signed locally (nothing is sent) with the credentials and region
the other commands use, the session token included; whoever holds it can
send the request until it expires (or the credentials do), so treat it as a
secret. Examples:
  curl -o report.pdf \"$(s3pump presign s3://b/report.pdf)\"
  curl -T photo.jpg \"$(s3pump presign s3://b/in/photo.jpg --method PUT --expires-in 600)\"

Exit status:
  0    success (the URL on stdout)
  1    failure (the error is one line on stderr)
  2    usage error";

/// Signs the URL.
pub fn presign(p: &Presign) -> Result<Done, String> {
    let client = client(&p.connection)?;
    let operation = match p.method {
        Method::Get => PresignOperation::GetObject,
        Method::Put => PresignOperation::PutObject,
    };
    let args = PresignArgs::new().expires_in(Duration::from_secs(p.expires_in));
    let signed = client
        .presign(operation, &p.url.bucket, &p.url.key, &args)
        .map_err(|e| failure(&client, &p.url.text, &e))?;
    Ok(Done {
        lines: vec![signed.url],
        ..Done::default()
    })
}
