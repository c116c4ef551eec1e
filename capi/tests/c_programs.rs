//! The C ABI tested from C: programs written only against
//! `include/s3pump.h`, compiled with `cc -Wall -Wextra -Werror`, linked with
//! `-ls3pump` (the libs3pump.so cargo built for this test), run against the
//! in-process S3 server whose endpoint and keys they get from the
//! environment. The header itself is checked against the library's exports.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::server::{ACCESS_KEY, REGION, SECRET_KEY, TestServer};

const MIB: usize = 1 << 20;

fn capi_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the libs3pump.so built with this test (cargo
/// builds the library's every crate type next to the test's dependencies).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let deps = exe.parent().expect("the deps directory");
    for dir in [deps, deps.parent().unwrap_or(deps)] {
        if dir.join("libs3pump.so").exists() {
            return dir.to_path_buf();
        }
    }
    panic!("no libs3pump.so next to {}", exe.display());
}

/// Compiles `source` (a path, or C text written to a file first) into an
/// executable linked with `-ls3pump`, in a directory of its own.
fn compile(name: &str, source: &Path, out_dir: &Path) -> PathBuf {
    let lib = lib_dir();
    let exe = out_dir.join(name);
    let output = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"])
        .arg("-I")
        .arg(capi_dir().join("include"))
        .arg("-I")
        .arg(capi_dir().join("tests/c"))
        .arg(source)
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", lib.display()))
        .arg("-ls3pump")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lpthread")
        .output()
        .expect("running cc");
    assert!(
        output.status.success(),
        "cc {} failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    exe
}

/// A server with a bucket, and a scratch directory.
struct Setup {
    server: TestServer,
    bucket: String,
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let server = TestServer::start();
    let bucket = "c-bucket".to_string();
    server.create_bucket(&bucket);
    Setup {
        server,
        bucket,
        dir: tempfile::tempdir().expect("a scratch directory"),
    }
}

impl Setup {
    /// A command running `program` (under `wrapper`, such as valgrind and
    /// its options, when not empty) with only the environment the C programs
    /// read: nothing of the caller's AWS settings or home directory.
    fn command(&self, wrapper: &[&str], program: &Path, size: usize) -> Command {
        let mut cmd = match wrapper.split_first() {
            None => Command::new(program),
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(program);
                cmd
            }
        };
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL_S3", self.server.endpoint())
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("S3PUMP_C_ENDPOINT", self.server.endpoint())
            .env("S3PUMP_C_REGION", REGION)
            .env("S3PUMP_C_ACCESS_KEY", ACCESS_KEY)
            .env("S3PUMP_C_SECRET_KEY", SECRET_KEY)
            .env("S3PUMP_C_BUCKET", &self.bucket)
            .env("S3PUMP_C_DIR", self.dir.path())
            .env("S3PUMP_C_SIZE", size.to_string());
        cmd
    }

    fn program(&self, name: &str) -> PathBuf {
        let source = capi_dir().join(format!("tests/c/{name}.c"));
        compile(name, &source, self.dir.path())
    }

    fn assert_nothing_left_open(&self) {
        let open = self.server.open_uploads();
        assert!(open.is_empty(), "multipart uploads left behind: {open:?}");
    }
}

fn assert_ran(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The bytes of the C programs' objects: byte i as `byte_at` in common.h.
fn expected_bytes(size: usize) -> Vec<u8> {
    (0..size as u64)
        .map(|i| ((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect()
}

#[test]
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process server")]
fn a_c_program_uploads_by_pull_file_and_push_and_downloads_back_identical() {
    let s = setup();
    let size = 13 * MIB + 12345;
    let exe = s.program("roundtrip");
    let output = s
        .command(&[], &exe, size)
        .output()
        .expect("running roundtrip");
    assert_ran(&output, "roundtrip");
    // What the program uploaded, checked on the server's side as well.
    let expected = expected_bytes(size);
    for key in ["pulled.bin", "file.bin", "pushed.bin"] {
        let got = s.server.object_bytes(&s.bucket, key).expect(key);
        assert!(
            got == expected,
            "{key}: {} bytes, not the expected ones",
            got.len()
        );
    }
    assert!(s.server.object_bytes(&s.bucket, "small.bin").is_none());
    s.assert_nothing_left_open();
}

#[test]
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process server")]
fn a_c_program_gets_every_failure_as_a_status_and_an_error_and_nothing_is_left_behind() {
    let s = setup();
    let exe = s.program("errors");
    let output = s.command(&[], &exe, 0).output().expect("running errors");
    assert_ran(&output, "errors");
    for key in [
        "failed.bin",
        "cancelled.bin",
        "endless.bin",
        "aborted.bin",
        "k",
    ] {
        assert!(
            s.server.object_bytes(&s.bucket, key).is_none(),
            "{key} exists after a failed upload"
        );
    }
    s.assert_nothing_left_open();
}

#[test]
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process server")]
fn the_c_roundtrip_under_valgrind_has_no_error_and_no_definite_leak() {
    let found = Command::new("valgrind").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "valgrind is not installed (apt-get install -y valgrind)"
    );
    let s = setup();
    let exe = s.program("roundtrip");
    let valgrind = [
        "valgrind",
        "--error-exitcode=99",
        "--leak-check=full",
        "--show-leak-kinds=definite",
        "--errors-for-leak-kinds=definite",
    ];
    let output = s
        .command(&valgrind, &exe, 11 * MIB)
        .output()
        .expect("running valgrind");
    assert_ran(&output, "roundtrip under valgrind");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(
        report.contains("Memcheck"),
        "not valgrind's report:\n{report}"
    );
    // The summary, for the test's log (`--nocapture`).
    for line in report
        .lines()
        .filter(|l| l.contains("lost:") || l.contains("SUMMARY"))
    {
        eprintln!("{line}");
    }
    assert!(
        report.contains("ERROR SUMMARY: 0 errors"),
        "valgrind found errors:\n{report}"
    );
    assert!(
        report.contains("definitely lost: 0 bytes")
            || report.contains("All heap blocks were freed"),
        "valgrind found a definite leak:\n{report}"
    );
    s.assert_nothing_left_open();
}

/// The functions `s3pump.h` declares.
fn declared_functions() -> BTreeSet<String> {
    let header = std::fs::read_to_string(capi_dir().join("include/s3pump.h")).expect("s3pump.h");
    let mut names = BTreeSet::new();
    // A declaration is `<type> [*]s3pump_name(` at the start of a line
    // (callback typedefs are `(*s3pump_name_fn)` and are not functions).
    for line in header.lines() {
        let line = line.trim_start();
        if line.starts_with("typedef") || line.starts_with('#') || line.starts_with('/') {
            continue;
        }
        if let Some(open) = line.find('(') {
            let before = &line[..open];
            let name = before.rsplit([' ', '*']).next().unwrap_or("");
            if name.starts_with("s3pump_") {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[test]
fn the_header_declares_exactly_the_functions_the_library_exports() {
    let declared = declared_functions();
    assert!(
        declared.len() > 40,
        "only {} declarations found",
        declared.len()
    );
    let nm = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib_dir().join("libs3pump.so"))
        .output()
        .expect("running nm");
    assert_ran(&nm, "nm");
    let exported: BTreeSet<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (kind, name) = (f.nth(1)?, f.next()?);
            (kind == "T" && name.starts_with("s3pump_")).then(|| name.to_string())
        })
        .collect();
    let missing: Vec<_> = declared.difference(&exported).collect();
    let undeclared: Vec<_> = exported.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "declared in s3pump.h, not exported: {missing:?}"
    );
    assert!(
        undeclared.is_empty(),
        "exported, not declared in s3pump.h: {undeclared:?}"
    );
}

#[test]
fn every_declared_function_links_and_every_struct_has_the_size_its_init_sets() {
    let declared = declared_functions();
    let mut c = String::from(
        "#include <stdio.h>\n#include <string.h>\n#include \"s3pump.h\"\n\
         typedef void (*any_fn)(void);\nstatic any_fn all[] = {\n",
    );
    for name in &declared {
        c.push_str(&format!("    (any_fn){name},\n"));
    }
    c.push_str("};\nint main(void) {\n    int bad = 0;\n");
    // Every `s3pump_X_init(s3pump_X *)` must set struct_size to C's sizeof:
    // Rust's layout of the struct is C's.
    for name in &declared {
        if let Some(ty) = name.strip_suffix("_init") {
            c.push_str(&format!(
                "    {{ {ty} v; memset(&v, 0xA5, sizeof v); {name}(&v);\n      \
                 if (v.struct_size != sizeof v) {{ printf(\"{ty}: %zu, not %zu\\n\", v.struct_size, sizeof v); bad = 1; }} }}\n"
            ));
        }
    }
    c.push_str(
        "    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) if (!all[i]) bad = 1;\n",
    );
    c.push_str("    return bad;\n}\n");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("every_function.c");
    std::fs::write(&source, c).unwrap();
    let exe = compile("every_function", &source, dir.path());
    let output = Command::new(&exe).output().expect("running every_function");
    assert_ran(&output, "every_function");
}
