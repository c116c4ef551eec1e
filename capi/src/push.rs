//! `s3pump_upload`: a push-style upload. A thread runs `put_object` with a
//! reader that takes the caller's buffers as `s3pump_upload_write` hands
//! them over: each write waits until its bytes are copied into the
//! pipeline's buffers, so the data is copied once, as with a read callback.

use std::ffi::{c_char, c_int};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use s3pump_core::{Error, PutObjectOutput};

use crate::args::{check_output, handle_mut};
use crate::client::s3pump_client;
use crate::error::{handle, quietly, s3pump_error, status};
use crate::upload::{put_args, s3pump_put_options, s3pump_put_output, target, write_put_output};

/// How the caller ended the data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    Finish,
    Abort,
}

/// The caller's buffer being handed over, and how the upload stands.
struct State {
    data: Data,
    len: usize,
    /// How much of `data` the reader has taken.
    pos: usize,
    end: End,
    /// The reader was dropped: `put_object` ended (or stopped reading).
    reader_gone: bool,
}

/// The caller's buffer during `s3pump_upload_write`.
#[derive(Clone, Copy)]
struct Data(*const u8);

// SAFETY: the pointer is only read by the reader while the writing thread
// waits in `s3pump_upload_write` (which keeps the buffer alive and clears
// the pointer before returning).
unsafe impl Send for Data {}

struct Pipe {
    state: Mutex<State>,
    changed: Condvar,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }
}

/// The pipeline's side: a `Read` over the buffers the caller writes.
struct PipeReader(Arc<Pipe>);

impl io::Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.0.lock();
        loop {
            if s.end == End::Abort {
                return Err(io::Error::other(
                    "the upload was aborted (s3pump_upload_abort)",
                ));
            }
            if s.pos < s.len {
                let n = buf.len().min(s.len - s.pos);
                // SAFETY: `data` holds `len` bytes that stay valid while the
                // writer waits for `pos` to reach `len` (see `Data`).
                let src = unsafe { std::slice::from_raw_parts(s.data.0.add(s.pos), n) };
                buf[..n].copy_from_slice(src);
                s.pos += n;
                if s.pos == s.len {
                    self.0.changed.notify_all();
                }
                return Ok(n);
            }
            if s.end == End::Finish {
                return Ok(0);
            }
            s = self.0.wait(s);
        }
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        self.0.lock().reader_gone = true;
        self.0.changed.notify_all();
    }
}

/// A push-style upload in progress.
pub struct s3pump_upload {
    pipe: Arc<Pipe>,
    thread: Option<JoinHandle<Result<PutObjectOutput, Error>>>,
    /// Why the upload can take no more data, once it failed.
    failed: Option<String>,
}

impl s3pump_upload {
    fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        if let Some(why) = &self.failed {
            return Err(Error::InvalidArgument(format!(
                "the upload already failed ({why}); free it with s3pump_upload_abort"
            )));
        }
        if data.is_empty() {
            return Ok(());
        }
        let mut s = self.pipe.lock();
        s.data = Data(data.as_ptr());
        s.len = data.len();
        s.pos = 0;
        self.pipe.changed.notify_all();
        while s.pos < s.len && !s.reader_gone {
            s = self.pipe.wait(s);
        }
        let taken = s.pos == s.len;
        s.data = Data(std::ptr::null());
        s.len = 0;
        s.pos = 0;
        drop(s);
        if taken {
            return Ok(());
        }
        let e = match self.join() {
            Err(e) => e,
            Ok(_) => Error::InvalidArgument(
                "the upload took no more data: more bytes written than its declared size"
                    .to_string(),
            ),
        };
        self.failed = Some(e.to_string());
        Err(e)
    }

    /// Ends the data as `end` says and waits for `put_object`.
    fn end(&mut self, end: End) -> Result<PutObjectOutput, Error> {
        self.pipe.lock().end = end;
        self.pipe.changed.notify_all();
        self.join()
    }

    fn join(&mut self) -> Result<PutObjectOutput, Error> {
        match self.thread.take() {
            None => Err(Error::InvalidArgument(format!(
                "the upload already ended ({})",
                self.failed.as_deref().unwrap_or("finished")
            ))),
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(Error::Panic(
                    "the push upload's thread panicked".to_string(),
                ))
            }),
        }
    }
}

impl Drop for s3pump_upload {
    /// An upload dropped without `finish` is aborted: nothing is left behind.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.end(End::Abort);
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_upload_open(
    client: *mut s3pump_client,
    bucket: *const c_char,
    key: *const c_char,
    opts: *const s3pump_put_options,
    err: *mut *mut s3pump_error,
) -> *mut s3pump_upload {
    handle(err, || {
        let (client, bucket, key) = target(client, bucket, key)?;
        let args = put_args(opts)?;
        let pipe = Arc::new(Pipe {
            state: Mutex::new(State {
                data: Data(std::ptr::null()),
                len: 0,
                pos: 0,
                end: End::Open,
                reader_gone: false,
            }),
            changed: Condvar::new(),
        });
        let reader = PipeReader(pipe.clone());
        let (client, bucket, key) = (client.clone(), bucket.to_string(), key.to_string());
        let thread = std::thread::Builder::new()
            .name("s3pump-push".to_string())
            .spawn(move || client.put_object(&bucket, &key, reader, args))
            .map_err(|e| Error::Io {
                context: "starting the push upload's thread".to_string(),
                source: e,
            })?;
        Ok(s3pump_upload {
            pipe,
            thread: Some(thread),
            failed: None,
        })
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_upload_write(
    upload: *mut s3pump_upload,
    buf: *const u8,
    len: usize,
    err: *mut *mut s3pump_error,
) -> c_int {
    status(err, || {
        let upload = handle_mut(upload, "upload")?;
        let data: &[u8] = match (buf.is_null(), len) {
            (_, 0) => &[],
            (true, _) => return Err(Error::InvalidArgument("buf is NULL".to_string())),
            // SAFETY: not NULL; the caller's `len` readable bytes for the
            // duration of the call (header: s3pump_upload_write).
            (false, _) => unsafe { std::slice::from_raw_parts(buf, len) },
        };
        upload.write(data)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_upload_finish(
    upload: *mut s3pump_upload,
    out: *mut s3pump_put_output,
    err: *mut *mut s3pump_error,
) -> c_int {
    status(err, || {
        handle_mut(upload, "upload")?;
        // SAFETY: not NULL; made by `s3pump_upload_open` (`Box::into_raw`)
        // and, as the header says, freed here whatever the result.
        let mut upload = unsafe { Box::from_raw(upload) };
        if let Err(e) = check_output(out) {
            drop(upload); // aborts
            return Err(e);
        }
        let result = upload.end(End::Finish)?;
        write_put_output(out, &result);
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_upload_abort(upload: *mut s3pump_upload) {
    if !upload.is_null() {
        // SAFETY: made by `s3pump_upload_open` (`Box::into_raw`), freed once;
        // dropping it aborts the upload and waits for its thread.
        quietly(|| drop(unsafe { Box::from_raw(upload) }))
    }
}
