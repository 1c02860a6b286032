//! Large get payloads sent without passing through user space.
//!
//! A get's chunks are verified through the Syrup mapping just before they are sent (bounded
//! read-ahead, see `send_get`); the verified payload is then moved to the socket by the kernel:
//! `splice(2)` from the Syrup file at the payload's offset into a pipe the connection owns, and an
//! io_uring splice from the pipe into the socket. The pages the pipe takes are the page-cache pages
//! the verification read (a Syrup's durable bytes never change), so the bytes on the wire are the
//! verified bytes. Frame headers and any piece without a file go into the same pipe with `write`,
//! so the stream keeps its order. The file-to-pipe step is synchronous (the pages are resident:
//! they were just read) and non-blocking on the pipe; when the pipe is full it is drained into
//! the socket first.
//!
//! A file the kernel cannot splice from makes the connection copy from then on (logged once).

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, OwnedFd},
};

use candybox_core::engine::Piece;
use monoio::{
    io::splice::SpliceDestination,
    net::{tcp::TcpOwnedWriteHalf, Pipe},
};
use rustix::{
    io::Errno,
    pipe::{fcntl_setpipe_size, splice, SpliceFlags},
};

use crate::limits::SPLICE_PIPE_BYTES;

/// The pipe a connection splices through, and the bytes in it not yet moved to the socket.
pub struct SplicePipe {
    r: Pipe,
    w: Pipe,
    held: usize,
    /// The kernel refused to splice from a Syrup file: copy from then on.
    copy_only: bool,
}

fn borrow(p: &Pipe) -> BorrowedFd<'_> {
    #[expect(unsafe_code, reason = "see SAFETY")]
    // SAFETY: the descriptor is owned by `p`, which outlives the returned borrow.
    unsafe {
        BorrowedFd::borrow_raw(p.as_raw_fd())
    }
}

impl SplicePipe {
    /// A pipe of `SPLICE_PIPE_BYTES` (or the system's default size where that is refused) whose
    /// write end does not block.
    ///
    /// # Errors
    /// Creating the pipe or setting its write end non-blocking failed (out of descriptors).
    pub fn new() -> io::Result<SplicePipe> {
        let (r, w) = monoio::net::unix::new_pipe()?;
        // Over the per-user pipe allowance (`/proc/sys/fs/pipe-user-pages-soft`) the size stays
        // the default: the pipe is drained more often, nothing else changes.
        let _ = fcntl_setpipe_size(borrow(&w), SPLICE_PIPE_BYTES);
        let fd = borrow(&w);
        let flags = rustix::fs::fcntl_getfl(fd)?;
        rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
        Ok(SplicePipe { r, w, held: 0, copy_only: false })
    }

    /// Sends small bytes and pieces in order: `buf` with each piece placed at its position
    /// (`large` is ordered by position). Returns the payload bytes that were spliced.
    ///
    /// # Errors
    /// The socket failed, or the pipe did (the connection is closed).
    pub async fn send(&mut self, wr: &mut TcpOwnedWriteHalf, buf: &[u8], large: &[(usize, Piece)]) -> io::Result<u64> {
        let mut spliced = 0u64;
        let mut at = 0usize;
        for (pos, piece) in large {
            self.push_bytes(wr, buf.get(at..*pos).unwrap_or_default()).await?;
            at = *pos;
            let done = match &piece.file {
                Some((fd, offset)) if !self.copy_only => self.push_file(wr, fd, *offset, piece.bytes.len()).await?,
                _ => 0,
            };
            spliced += done as u64;
            self.push_bytes(wr, piece.bytes.get(done..).unwrap_or_default()).await?;
        }
        self.push_bytes(wr, buf.get(at..).unwrap_or_default()).await?;
        self.drain(wr).await?;
        Ok(spliced)
    }

    /// Copies `data` into the pipe, draining it into the socket whenever it is full.
    async fn push_bytes(&mut self, wr: &mut TcpOwnedWriteHalf, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match rustix::io::write(borrow(&self.w), data) {
                Ok(n) => {
                    self.held += n;
                    data = data.get(n..).unwrap_or_default();
                }
                Err(Errno::AGAIN) if self.held > 0 => self.drain(wr).await?,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Splices `len` bytes of `file` at `offset` into the pipe, draining it whenever it is full.
    /// Returns how many were spliced: fewer than `len` when the kernel refused (the caller copies
    /// the rest from the mapping, and so does every later piece of this connection).
    async fn push_file(
        &mut self,
        wr: &mut TcpOwnedWriteHalf,
        file: &OwnedFd,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        let mut at = offset;
        let mut done = 0usize;
        while done < len {
            let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
            match splice(file, Some(&mut at), borrow(&self.w), None, len - done, flags) {
                Ok(0) => {
                    // The file ends before the mapping does: impossible for a durable range.
                    self.refuse("the Syrup file ended before its mapped bytes");
                    break;
                }
                Ok(n) => {
                    self.held += n;
                    done += n;
                }
                Err(Errno::AGAIN) if self.held > 0 => self.drain(wr).await?,
                Err(Errno::INTR) => {}
                Err(e) => {
                    self.refuse(&e.to_string());
                    break;
                }
            }
        }
        Ok(done)
    }

    fn refuse(&mut self, why: &str) {
        tracing::warn!(error = why, "splicing a get from its Syrup file failed; this connection copies from now on");
        self.copy_only = true;
    }

    /// Moves everything in the pipe into the socket.
    async fn drain(&mut self, wr: &mut TcpOwnedWriteHalf) -> io::Result<()> {
        while self.held > 0 {
            let want = u32::try_from(self.held).unwrap_or(u32::MAX);
            match wr.splice_from_pipe(&mut self.r, want).await {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.held -= n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
