//! Sets `cfg(s3pump_external_s3)` when the tests are built to run against an
//! external S3 (`S3PUMP_TEST_ENDPOINT`), as the main crate's build.rs does:
//! the C programs' tests need the in-process server and are then ignored.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(s3pump_external_s3)");
    println!("cargo::rerun-if-env-changed=S3PUMP_TEST_ENDPOINT");
    if std::env::var_os("S3PUMP_TEST_ENDPOINT").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=s3pump_external_s3");
    }
}
