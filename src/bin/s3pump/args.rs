//! The command line, declared with clap's derive.
//!
//! Every flag and argument here is a contract (scripts use them): rename
//! nothing. Options shared by several commands live in one flattened struct
//! each ([`Connection`], [`Transfer`], [`Output`]) so that a new command
//! (`cp`, `ls`, `rm`) or a new connection flag (`--profile`, `--ca-bundle`)
//! is added in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use s3pump::ChecksumAlgorithm;

/// Shown at the end of every `--help`.
const EXIT_STATUS: &str = "\
Exit status:
  0    success
  1    failure (the error is one line on stderr)
  2    usage error
  130  interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: the upload was aborted,
       a partial download removed; a second signal exits at once";

const ENVIRONMENT: &str = "\
Environment:
  AWS_ENDPOINT_URL, AWS_REGION, AWS_DEFAULT_REGION, AWS_PROFILE,
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and the shared
  files ~/.aws/config and ~/.aws/credentials, as the AWS CLI reads them;
  S3PUMP_RDMA_LIBRARY and S3PUMP_RDMA_CONFIG for RDMA.";

/// Parallel S3 upload and download: N parts in flight.
///
/// `put` and `get` print one JSON line on success:
/// {"bucket":…,"key":…,"etag":…,"parts":N,"bytes":N,"seconds":F}
#[derive(Debug, Parser)]
#[command(
    name = "s3pump",
    version,
    subcommand_required = true,
    arg_required_else_help = true,
    after_help = format!("{ENVIRONMENT}\n\n{EXIT_STATUS}"),
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload a file or a stream to s3://BUCKET/KEY.
    #[command(after_help = EXIT_STATUS, args_override_self = true)]
    Put(Put),
    /// Download s3://BUCKET/KEY to a file or to standard output.
    #[command(after_help = EXIT_STATUS, args_override_self = true)]
    Get(Get),
    /// Copy a file, a stream or (with --recursive) a directory tree to S3,
    /// or objects from S3, as `aws s3 cp` does.
    #[command(after_help = CP_HELP, args_override_self = true)]
    Cp(Cp),
    /// Move: `cp`, then delete the source once the copy is in place (a file
    /// after its upload completed, an object after its download or copy).
    #[command(after_help = MV_HELP, args_override_self = true)]
    Mv(Cp),
    /// List s3://BUCKET[/PREFIX] by "directory" (`PRE prefix/` lines), or
    /// every object under it with --recursive: size, last modified, key.
    #[command(after_help = EXIT_STATUS, args_override_self = true)]
    Ls(Ls),
    /// Delete s3://BUCKET/KEY, or every object under a prefix (--recursive).
    #[command(after_help = EXIT_STATUS, args_override_self = true)]
    Rm(Rm),
    /// Print a presigned URL for s3://BUCKET/KEY (GET or PUT), usable
    /// without credentials until it expires.
    #[command(after_help = crate::presign::PRESIGN_HELP, args_override_self = true)]
    Presign(crate::presign::Presign),
}

/// Shown at the end of `cp --help`.
const CP_HELP: &str = "\
Examples:
  s3pump cp ./disk.img s3://b/images/          (the key is images/disk.img)
  s3pump cp - s3://b/k < stream                (standard input)
  s3pump cp s3://b/images/disk.img ./          (writes ./disk.img)
  s3pump cp s3://b/k -                         (standard output)
  s3pump cp --recursive ./photos s3://b/photos
  s3pump cp --recursive s3://b/photos ./copy
  s3pump cp s3://b/k s3://b2/k2                (on the server: no byte through s3pump)
  s3pump cp --recursive s3://b/p/ s3://b2/q/

With --recursive a key is the prefix, a '/' and the file's path under the
directory; keys ending in '/' are skipped on download, and a listed key that
is not under the prefix or would leave the directory ('..', a leading '/',
an empty segment) is skipped with a warning on stderr while the other
objects go on. One JSON line at the end:
{\"objects\":N,\"bytes\":N,\"failed\":N,\"seconds\":F} (with \"refused\":N
after \"failed\" when keys were skipped); each failed object is one line on
stderr, and any failure or skipped key makes the exit status 1. Keys and
server messages are printed with control characters escaped (\\e, \\n, \\x01).

Exit status:
  0    success
  1    failure (the error is one line on stderr; --recursive: an object failed)
  2    usage error
  130  interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: the upload was aborted,
       a partial download removed; a second signal exits at once";

/// Shown at the end of `mv --help`.
const MV_HELP: &str = "\
Examples:
  s3pump mv ./report.pdf s3://b/reports/       (the file is removed once uploaded)
  s3pump mv s3://b/in/report.pdf ./            (the object is deleted once downloaded)
  s3pump mv s3://b/in/a.csv s3://b2/done/a.csv (copied on the server, then deleted)
  s3pump mv --recursive s3://b/in/ s3://b/done/

mv takes cp's options; standard input or output, a source that is not a
regular file, and --recursive between a directory and S3 are refused.

Exit status:
  0    success
  1    failure (the error is one line on stderr; the source is kept)
  2    usage error";

/// `s3pump put SRC s3://BUCKET/KEY`.
#[derive(Debug, Clone, Args)]
pub struct Put {
    /// A file (its parts are read in parallel), or - for standard input (read
    /// as a stream of unknown size). A pipe or device is read as a stream.
    #[arg(value_name = "SRC")]
    pub src: PathBuf,
    /// Where to upload it.
    #[arg(value_name = "s3://BUCKET/KEY", value_parser = parse_s3_url)]
    pub url: S3Url,
    /// Checksum sent with every part and checked by the server.
    #[arg(long, value_name = "ALGORITHM", allow_hyphen_values = true)]
    pub checksum: Option<Checksum>,
    /// Send the parts with `x-amz-content-sha256: UNSIGNED-PAYLOAD` (no
    /// SHA-256 of the data; the checksum still protects it).
    #[arg(long)]
    pub unsigned_payload: bool,
    /// Sign the SHA-256 of every part, on https too. Without this or
    /// --unsigned-payload: UNSIGNED-PAYLOAD plus the checksum over https,
    /// signed over http (as the AWS SDKs do).
    #[arg(long, conflicts_with = "unsigned_payload")]
    pub signed_payload: bool,
    /// The object's Content-Type.
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub content_type: Option<String>,
    /// User metadata (x-amz-meta-K: V); may be repeated.
    #[arg(long, value_name = "K=V", value_parser = parse_meta, allow_hyphen_values = true)]
    pub meta: Vec<(String, String)>,
    /// Keep a failed upload on the server (the error names its id) instead
    /// of aborting it.
    #[arg(long)]
    pub keep_failed_upload: bool,
    /// Resume a kept upload of the same file: send only the parts it misses.
    #[arg(long, value_name = "UPLOAD_ID", allow_hyphen_values = true)]
    pub resume: Option<String>,
    #[command(flatten)]
    pub condition: Condition,
    #[command(flatten)]
    pub transfer: Transfer,
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub output: Output,
}

/// `s3pump get s3://BUCKET/KEY DEST`.
#[derive(Debug, Clone, Args)]
pub struct Get {
    /// What to download.
    #[arg(value_name = "s3://BUCKET/KEY", value_parser = parse_s3_url)]
    pub url: S3Url,
    /// A file (written to a temporary file renamed into place when
    /// complete), or - for standard output (written in order; the JSON line
    /// then goes to stderr).
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    /// Do not check the object's full-object checksum.
    #[arg(long)]
    pub no_verify_checksum: bool,
    #[command(flatten)]
    pub transfer: Transfer,
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub output: Output,
}

/// S3's conditional writes: what the upload may replace.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Condition")]
pub struct Condition {
    /// Upload only if no object has the key (If-None-Match: *); otherwise
    /// the upload fails (exit status 1, "precondition failed") and the
    /// object is left as it was.
    #[arg(long, conflicts_with = "if_match")]
    pub if_none_match: bool,
    /// Upload only if the object in place has this ETag (If-Match), as `ls
    /// --json` or a `put` printed it; otherwise the upload fails as with
    /// --if-none-match.
    #[arg(long, value_name = "ETAG", allow_hyphen_values = true)]
    pub if_match: Option<String>,
}

impl Condition {
    /// `args` with the condition.
    pub fn apply(&self, args: s3pump::PutObjectArgs) -> s3pump::PutObjectArgs {
        match (&self.if_match, self.if_none_match) {
            (Some(etag), _) => args.if_match(etag),
            (None, true) => args.if_none_match(),
            (None, false) => args,
        }
    }
}

/// How the object is cut into parts (or ranges).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Transfer")]
pub struct Transfer {
    /// Part (or range) size: bytes, or a number with KiB, MiB or GiB; 5 MiB
    /// to 5 GiB for an upload, 1 MiB to 5 GiB for a download. Defaults to
    /// 8 MiB (larger when the object needs it).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true)]
    pub part_size: Option<u64>,
    /// Parts (or ranges) in flight at once, 1 to 100. Defaults to 8.
    #[arg(long, value_name = "N", value_parser = parse_inflight, allow_hyphen_values = true)]
    pub max_inflight_parts: Option<usize>,
    /// RDMA provider library (else S3PUMP_RDMA_LIBRARY).
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    pub rdma_library: Option<PathBuf>,
    /// Fail when the server's full-object checksum cannot be checked (a value
    /// of the wrong length for its algorithm, as some servers send); without
    /// it that is a warning. A checksum that differs always fails.
    #[arg(long)]
    pub strict_checksums: bool,
}

/// Where the server is and how to reach it.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection")]
pub struct Connection {
    /// S3 endpoint (else AWS_ENDPOINT_URL, else AWS).
    #[arg(long, value_name = "URL", allow_hyphen_values = true)]
    pub endpoint: Option<String>,
    /// Region (else AWS_REGION, AWS_DEFAULT_REGION, the profile's, else
    /// us-east-1).
    #[arg(long, value_name = "R", allow_hyphen_values = true)]
    pub region: Option<String>,
    /// Path-style addressing (on by default with an endpoint).
    #[arg(long)]
    pub path_style: bool,
    /// The profile of ~/.aws/config and ~/.aws/credentials to take the
    /// credentials (and region) from; the AWS_ACCESS_KEY_ID keys are then
    /// not used (else AWS_PROFILE, else the default chain).
    #[arg(long, value_name = "NAME", allow_hyphen_values = true)]
    pub profile: Option<String>,
    /// Send requests unsigned, with no credentials (public buckets).
    #[arg(long, conflicts_with = "profile")]
    pub no_sign_request: bool,
    /// PEM file of the root certificates to trust for https (else
    /// AWS_CA_BUNDLE, the profile's ca_bundle, else the system's store and
    /// the bundled Mozilla roots).
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    pub ca_bundle: Option<PathBuf>,
}

/// `s3pump cp SRC DEST [--recursive]`.
#[derive(Debug, Args)]
pub struct Cp {
    /// A file, - (standard input), a directory (with --recursive) or an
    /// s3:// URL.
    #[arg(value_name = "SRC")]
    pub src: String,
    /// A file, - (standard output), a directory, or an s3:// URL; a URL or
    /// path ending in '/' (or an existing directory) gets the source's name.
    #[arg(value_name = "DEST")]
    pub dest: String,
    /// Copy a directory tree to s3://BUCKET/PREFIX, or every object under
    /// a prefix to a directory.
    #[arg(long)]
    pub recursive: bool,
    /// Objects copied at once (with --recursive), at least 1. Defaults to 16.
    #[arg(long, value_name = "N", value_parser = parse_concurrency, allow_hyphen_values = true)]
    pub concurrency: Option<usize>,
    /// Go on with the other objects after one failed (with --recursive);
    /// without it the first failure starts no new object.
    #[arg(long)]
    pub keep_going: bool,
    /// Follow symbolic links in an uploaded tree (they are skipped, with a
    /// warning, without it).
    #[arg(long)]
    pub follow_symlinks: bool,
    /// Upload: checksum sent with every part and checked by the server.
    #[arg(long, value_name = "ALGORITHM", allow_hyphen_values = true)]
    pub checksum: Option<Checksum>,
    /// Upload: send the parts with UNSIGNED-PAYLOAD (see `put --help`).
    #[arg(long)]
    pub unsigned_payload: bool,
    /// Upload: sign the SHA-256 of every part (see `put --help`).
    #[arg(long, conflicts_with = "unsigned_payload")]
    pub signed_payload: bool,
    /// Upload: the objects' Content-Type.
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub content_type: Option<String>,
    /// Upload: user metadata (x-amz-meta-K: V); may be repeated.
    #[arg(long, value_name = "K=V", value_parser = parse_meta, allow_hyphen_values = true)]
    pub meta: Vec<(String, String)>,
    /// Download: do not check the objects' full-object checksums.
    #[arg(long)]
    pub no_verify_checksum: bool,
    #[command(flatten)]
    pub condition: Condition,
    #[command(flatten)]
    pub transfer: Transfer,
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub output: Output,
}

/// `s3pump ls s3://BUCKET[/PREFIX]`.
#[derive(Debug, Args)]
pub struct Ls {
    /// The bucket, and the prefix the keys start with: the objects directly
    /// under it, and one `PRE prefix/` line for each "directory" below it
    /// (with --recursive: every object under it, at any depth).
    #[arg(value_name = "s3://BUCKET[/PREFIX]", value_parser = parse_s3_location)]
    pub url: S3Url,
    /// One JSON object a line: {"key","size","last_modified","etag"}, and
    /// {"prefix"} for a "directory".
    #[arg(long)]
    pub json: bool,
    /// Every object under the prefix, at any depth, and no `PRE` lines.
    #[arg(long)]
    pub recursive: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `s3pump rm s3://BUCKET/KEY [--recursive]`.
#[derive(Debug, Args)]
pub struct Rm {
    /// The object; with --recursive, the prefix (a '/' is added to a prefix
    /// that lacks one; s3://BUCKET alone is the whole bucket).
    #[arg(value_name = "s3://BUCKET/KEY", value_parser = parse_s3_location)]
    pub url: S3Url,
    /// Delete every object under the prefix, 1000 keys a request.
    #[arg(long)]
    pub recursive: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// What is shown while the transfer runs.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Output")]
pub struct Output {
    /// No progress bar (it is shown only when stderr is a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// `--checksum` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Checksum {
    /// CRC64/NVME (the default).
    Crc64nvme,
    /// CRC32C.
    Crc32c,
    /// No checksum.
    None,
}

impl From<Checksum> for ChecksumAlgorithm {
    fn from(c: Checksum) -> Self {
        match c {
            Checksum::Crc64nvme => ChecksumAlgorithm::Crc64Nvme,
            Checksum::Crc32c => ChecksumAlgorithm::Crc32c,
            Checksum::None => ChecksumAlgorithm::None,
        }
    }
}

/// A parsed `s3://BUCKET/KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key (never empty), or for `cp`, `ls` and `rm` the key or prefix
    /// (may be empty).
    pub key: String,
    /// The URL as given, for messages.
    pub text: String,
}

/// Splits `s3://bucket/key`.
pub fn parse_s3_url(s: &str) -> Result<S3Url, String> {
    let rest = s
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{s:?} is not an s3://BUCKET/KEY URL"))?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or_else(|| format!("{s:?} has no key: use s3://BUCKET/KEY"))?;
    if bucket.is_empty() || key.is_empty() {
        return Err(format!("{s:?} needs both a bucket and a key"));
    }
    Ok(S3Url {
        bucket: bucket.to_string(),
        key: key.to_string(),
        text: s.to_string(),
    })
}

/// Splits `s3://bucket[/key-or-prefix]`; the key may be empty.
pub fn parse_s3_location(s: &str) -> Result<S3Url, String> {
    let rest = s
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{s:?} is not an s3://BUCKET[/PREFIX] URL"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("{s:?} has no bucket"));
    }
    Ok(S3Url {
        bucket: bucket.to_string(),
        key: key.to_string(),
        text: s.to_string(),
    })
}

/// Parses `K=V` (V may hold `=`).
fn parse_meta(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not K=V"))?;
    Ok((k.to_string(), v.to_string()))
}

/// The most parts in flight (the library's limit).
const MAX_INFLIGHT_PARTS: usize = 100;
/// An upload's part sizes: S3's 5 MiB to 5 GiB.
const UPLOAD_PART_SIZES: std::ops::RangeInclusive<u64> = 5 << 20..=5 << 30;
/// A download's range sizes: 1 MiB to 5 GiB.
const DOWNLOAD_PART_SIZES: std::ops::RangeInclusive<u64> = 1 << 20..=5 << 30;

/// Parses `--max-inflight-parts`: 1 to 100.
fn parse_inflight(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_INFLIGHT_PARTS).contains(&n) => Ok(n),
        _ => Err(format!("must be a number from 1 to {MAX_INFLIGHT_PARTS}")),
    }
}

/// Parses `--concurrency`: at least 1.
fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number, at least 1".to_string()),
    }
}

/// Checks `--part-size` against the direction's range (a usage error
/// otherwise): clap cannot, as `Transfer` is shared by both directions.
pub fn check_part_size(t: &Transfer, upload: bool) -> Result<(), String> {
    let (range, what, text) = if upload {
        (UPLOAD_PART_SIZES, "an upload", "5 MiB to 5 GiB")
    } else {
        (DOWNLOAD_PART_SIZES, "a download", "1 MiB to 5 GiB")
    };
    match t.part_size {
        Some(ps) if !range.contains(&ps) => Err(format!(
            "--part-size {ps} bytes is out of range: {text} for {what}"
        )),
        _ => Ok(()),
    }
}

/// Parses `1048576`, `5MiB`, `1.5GiB`, `64KiB` (also KB/MB/GB as binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "size {s:?}: unknown unit (use bytes, KiB, MiB or GiB)"
            ));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("size {s:?} is not a number"))?;
    Ok((n * mult as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("5MiB").unwrap(), 5 << 20);
        assert_eq!(parse_size("64 KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn counts_and_part_sizes_have_ranges() {
        assert_eq!(parse_inflight("1"), Ok(1));
        assert_eq!(parse_inflight("100"), Ok(100));
        for bad in ["0", "101", "-1", "x", ""] {
            let e = parse_inflight(bad).unwrap_err();
            assert!(e.contains("1 to 100"), "{bad}: {e}");
        }
        assert_eq!(parse_concurrency("1"), Ok(1));
        assert!(parse_concurrency("0").unwrap_err().contains("at least 1"));
        let t = |ps: u64| Transfer {
            part_size: Some(ps),
            max_inflight_parts: None,
            rdma_library: None,
            strict_checksums: false,
        };
        assert!(check_part_size(&t(5 << 20), true).is_ok());
        assert!(check_part_size(&t(5 << 30), true).is_ok());
        let e = check_part_size(&t(1 << 10), true).unwrap_err();
        assert!(e.contains("5 MiB to 5 GiB for an upload"), "{e}");
        assert!(check_part_size(&t((5 << 30) + 1), true).is_err());
        assert!(check_part_size(&t(1 << 20), false).is_ok());
        let e = check_part_size(&t(100 << 10), false).unwrap_err();
        assert!(e.contains("1 MiB to 5 GiB for a download"), "{e}");
    }

    #[test]
    fn urls_and_meta() {
        let u = parse_s3_url("s3://b/a/b c").unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("b", "a/b c"));
        assert!(parse_s3_url("s3://b").is_err());
        assert!(parse_s3_url("s3://b/").is_err());
        assert!(parse_s3_url("http://b/k").is_err());
        assert_eq!(
            parse_meta("a=b=c").unwrap(),
            ("a".to_string(), "b=c".to_string())
        );
        assert!(parse_meta("ab").is_err());
    }
}
