//! `aws-tm-bench`: one transfer with the AWS transfer manager
//! (aws-sdk-s3-transfer-manager), timed, for benches/aws-tm/run.sh.
//!
//! ```text
//! aws-tm-bench upload FILE s3://BUCKET/KEY
//! aws-tm-bench download s3://BUCKET/KEY FILE
//! aws-tm-bench upload-objects DIR s3://BUCKET/PREFIX
//! aws-tm-bench download-objects s3://BUCKET/PREFIX DIR
//! ```
//!
//! Environment (all but the endpoint have defaults for a local test server):
//! - `AWS_ENDPOINT_URL`: the endpoint (required), http:// or https://.
//! - `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`: static keys (default
//!   `AKIAIOSFODNN7EXAMPLE` and its example secret).
//! - `AWS_REGION`: default `us-east-1`. Addressing is always path-style.
//! - `TM_PART_SIZE`: part (and range) size in bytes, default 8 MiB.
//! - `TM_CONCURRENCY`: `ConcurrencyMode::Explicit(N)`, requests in flight
//!   across the whole client, default 8.
//! - `TM_OBJECTS`: objects at once for upload-objects/download-objects
//!   (`max_concurrent_uploads`/`max_concurrent_downloads`), default: the
//!   transfer manager's own.
//! - https: the transfer manager's HTTP client trusts the system's store;
//!   `SSL_CERT_FILE` points it at a private CA (run.sh does).
//!
//! Checksums are the transfer manager's defaults (CRC64NVME on every part
//! of an upload, `RequestChecksumCalculation::WhenSupported`).
//!
//! Prints one line: `{"op":…,"objects":N,"bytes":N,"seconds":F}`. Client CPU
//! is measured from outside (run.sh runs this under /usr/bin/time).

use std::path::PathBuf;
use std::time::Instant;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3_transfer_manager::io::walk::FsWalker;
use aws_sdk_s3_transfer_manager::io::InputStream;
use aws_sdk_s3_transfer_manager::types::{ConcurrencyMode, PartSize};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn env_num(name: &str) -> Result<Option<usize>, BoxError> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v.parse().map_err(|e| format!("{name}={v}: {e}"))?)),
        Err(_) => Ok(None),
    }
}

/// `s3://BUCKET/KEY` into (bucket, key).
fn s3_url(url: &str) -> Result<(String, String), BoxError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("not an s3:// URL: {url}"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((bucket.to_owned(), key.to_owned()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The transfer manager's default runtime (RuntimeMode::Managed) runs
    // the transfers on threads of its own; this runtime only drives main.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("aws-tm-bench: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        std::process::exit(1);
    }
}

async fn run(args: Vec<String>) -> Result<(), BoxError> {
    let [op, src, dest] = <[String; 3]>::try_from(args).map_err(|_| {
        "usage: aws-tm-bench upload|download|upload-objects|download-objects SRC DEST"
    })?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").map_err(|_| "AWS_ENDPOINT_URL is not set")?;
    let part_size = env_num("TM_PART_SIZE")?.unwrap_or(8 << 20) as u64;
    let concurrency = env_num("TM_CONCURRENCY")?.unwrap_or(8);
    let objects = env_num("TM_OBJECTS")?;

    let s3 = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(env_or("AWS_REGION", "us-east-1")))
        .credentials_provider(Credentials::new(
            env_or("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            env_or(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            None,
            None,
            "static",
        ))
        .endpoint_url(endpoint)
        .force_path_style(true);
    let config = aws_sdk_s3_transfer_manager::Config::builder()
        .s3_config(s3)
        .part_size(PartSize::Target(part_size))
        .multipart_threshold(PartSize::Target(part_size))
        .concurrency(ConcurrencyMode::Explicit(concurrency))
        .build();
    let tm = aws_sdk_s3_transfer_manager::Client::new(config);

    let start = Instant::now();
    let (count, bytes) = match op.as_str() {
        "upload" => {
            let (bucket, key) = s3_url(&dest)?;
            let len = std::fs::metadata(&src)?.len();
            tm.upload()
                .bucket(bucket)
                .key(key)
                .body(InputStream::from_path(&src)?)
                .initiate()?
                .join()
                .await?;
            (1, len)
        }
        "download" => {
            let (bucket, key) = s3_url(&src)?;
            let handle = tm
                .download()
                .bucket(bucket)
                .key(key)
                .write_to_path(PathBuf::from(&dest))
                .await?;
            let len = handle.object_meta().await?.total_object_size();
            handle.join().await?;
            (1, len)
        }
        "upload-objects" => {
            let (bucket, prefix) = s3_url(&dest)?;
            let mut b = tm
                .upload_objects()
                .source(&src)
                .bucket(bucket)
                .key_prefix(prefix)
                .walker(FsWalker::builder().recursive(true).build());
            if let Some(n) = objects {
                b = b.max_concurrent_uploads(n);
            }
            let out = b.initiate()?.join().await?;
            if !out.failed_transfers().is_empty() {
                return Err(format!("{} objects failed", out.failed_transfers().len()).into());
            }
            (out.objects_uploaded(), out.metrics().network_tx)
        }
        "download-objects" => {
            let (bucket, prefix) = s3_url(&src)?;
            std::fs::create_dir_all(&dest)?;
            let mut b = tm
                .download_objects()
                .bucket(bucket)
                .key_prefix(prefix)
                .destination(&dest);
            if let Some(n) = objects {
                b = b.max_concurrent_downloads(n);
            }
            let out = b.initiate()?.join().await?;
            if !out.failed_transfers().is_empty() {
                return Err(format!("{} objects failed", out.failed_transfers().len()).into());
            }
            (out.objects_downloaded(), out.metrics().network_rx)
        }
        other => return Err(format!("unknown operation {other}").into()),
    };
    let seconds = start.elapsed().as_secs_f64();
    println!(r#"{{"op":"{op}","objects":{count},"bytes":{bytes},"seconds":{seconds:.3}}}"#);
    Ok(())
}
